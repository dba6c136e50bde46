/* LLM token usage: read from an OpenAI-style response as it streams through, and estimated up
 * front from the request. Pure: no I/O, no loop; a sk_usage keeps state for one response. Loop
 * thread only.
 *
 * What is read: a `usage` object with prompt_tokens / completion_tokens (Chat Completions,
 * Completions, Embeddings) or input_tokens / output_tokens (Responses API, Anthropic), found at
 * the top level of the JSON, or under `response` (Responses API stream events) or `message`
 * (Anthropic's message_start). Token counts are non-negative integers below 2^53.
 *  - A JSON body (application/json, application/<x>+json, or no content type) is buffered up to
 *    max_bytes and parsed by sk_usage_result; a body that does not start with '{' or outgrows
 *    max_bytes is dropped at once (no usage).
 *  - A text/event-stream body is parsed as Server-Sent Events as it arrives, in any chunk
 *    split (LF, CRLF or CR line ends; comments, other fields and multi-line data handled as the
 *    SSE spec says). Each event's data is parsed when it mentions "usage"; the data `[DONE]`
 *    and non-JSON data are skipped. A field found in a later event replaces the earlier value
 *    (OpenAI's last chunk with stream_options.include_usage; Anthropic's message_start gives
 *    input_tokens, message_delta the final output_tokens). An event whose data outgrows
 *    max_bytes is skipped, not buffered (counted by sk_usage_skipped). An event not ended by a
 *    blank line when the stream ends is discarded, as the SSE spec says.
 *  - Any other content type: nothing is read or kept. */
#ifndef SK_EGRESS_USAGE_H
#define SK_EGRESS_USAGE_H

#include <stddef.h>
#include <stdint.h>

#define SK_USAGE_DEFAULT_MAX ((size_t)4 << 20)

typedef struct sk_usage sk_usage;

/* content_type: the response's Content-Type value (NULL: none). max_bytes bounds the memory
 * held (the JSON body, one SSE event's data); 0: SK_USAGE_DEFAULT_MAX. NULL when out of
 * memory. */
sk_usage *sk_usage_new(const char *content_type, size_t max_bytes);
/* The next bytes of the response body. */
void sk_usage_feed(sk_usage *u, const char *chunk, size_t len);
/* 1 when a usage object was found (a count it lacks is reported as 0), else 0 with *input and
 * *output set to 0. For a JSON body this parses the buffer: call it once, at the end. */
int sk_usage_result(const sk_usage *u, int64_t *input, int64_t *output);
/* SSE events skipped because their data outgrew max_bytes. */
uint64_t sk_usage_skipped(const sk_usage *u);
/* Accepts NULL. */
void sk_usage_free(sk_usage *u);

/* Up-front token estimate of a request, to take from a tokens-per-minute bucket before sending
 * (corrected with sk_bucket_adjust once the usage is known): ceil(text bytes / 4) plus the
 * output asked for (the first of max_tokens, max_completion_tokens, max_output_tokens that is a
 * non-negative number; 0 when none). Text bytes: for a JSON object, the string content under
 * messages, prompt, input, instructions and system (strings, and the `text` and `content` of
 * objects within; a number in a prompt or input array is a token id and counts as 4 bytes);
 * when none of those keys is there, or the body is not a JSON object, the whole body. Never
 * negative; at most 2^53. */
int64_t sk_usage_estimate(const char *body, size_t len);

#endif
