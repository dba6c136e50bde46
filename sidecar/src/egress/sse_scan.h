/* Output secret scan of a text/event-stream response over the text the client reassembles.
 *
 * The byte scan (guard.h, sk_scan) sees the raw response: a secret an LLM streams split across
 * two events' JSON strings ("sk-ab" in one, "cd12..." in the next) is never contiguous there,
 * nor one written with JSON escapes ("sk-\u0061b"). This scan parses the stream as Server-Sent
 * Events (lines ended by CRLF, LF or CR; `data:` fields, one leading space dropped, joined with
 * LF; an event ends at a blank line; comments and other fields ignored; a leading UTF-8 BOM
 * dropped), reads each event's data as JSON and feeds an sk_scan with the decoded text a client
 * appends to its output, in event order:
 *   - choices[].delta.content and choices[].text (OpenAI chat and completions streams),
 *   - choices[].delta.tool_calls[].function.arguments (streamed tool-call arguments),
 *   - top-level `delta` when it is a string (the Responses API's *.delta events) or an object
 *     with a string `text` (Anthropic's content_block_delta).
 * Data that is not JSON ("[DONE]") or has none of these adds nothing. Every choice's text goes
 * into the one sequence (a stream with n > 1 interleaves them: a secret split across events of
 * one choice with another choice's event between them is not contiguous there).
 *
 * Holding: the proxy withholds the last sk_sse_scan_hold() bytes of the raw stream fed so far,
 * as with sk_scan (and the larger of the two holds when both run): the event not yet complete,
 * plus every complete event from the one holding the first decoded character that may start a
 * secret (sk_scan_hold of the decoded text). Whole events are thus held back while the decoded
 * tail could be the start of a secret; the hold never exceeds the previous hold plus the new
 * chunk, so "sent = fed - hold" is always safe. A stream whose events arrive whole is not
 * delayed unless its decoded text ends in a secret's prefix.
 *
 * Bounds: an event whose data passes SK_SSE_MAX_EVENT bytes (no LLM stream sends one) ends the
 * decoding for the response: from then on feed finds nothing more, the hold is 0, and
 * sk_sse_scan_gave_up() says so (the byte scan still runs). Pure: no I/O, no loop. */
#ifndef SK_EGRESS_SSE_SCAN_H
#define SK_EGRESS_SSE_SCAN_H

#include <stddef.h>

#define SK_SSE_MAX_EVENT (1024 * 1024)

typedef struct sk_sse_scan sk_sse_scan;

/* The needles as for sk_scan_new (copied; shorter than 4 bytes ignored). NULL when out of
 * memory. */
sk_sse_scan *sk_sse_scan_new(const char *const *needles, const size_t *lens, size_t n);
/* Feeds raw response bytes. 1 once a needle has appeared in the decoded text (sticky), else 0.
 * Out of memory gives up decoding (as an oversized event does). */
int sk_sse_scan_feed(sk_sse_scan *s, const char *chunk, size_t len);
/* At the end of the stream: decodes an event left without its blank line (a client may still
 * use it). 1 when a needle appeared, else 0. */
int sk_sse_scan_finish(sk_sse_scan *s);
/* Trailing raw bytes of the stream fed so far to withhold. */
size_t sk_sse_scan_hold(const sk_sse_scan *s);
/* 1 when decoding stopped (an oversized event or out of memory), else 0. */
int sk_sse_scan_gave_up(const sk_sse_scan *s);
/* Accepts NULL. */
void sk_sse_scan_free(sk_sse_scan *s);

#endif
