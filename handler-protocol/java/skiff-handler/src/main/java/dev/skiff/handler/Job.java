package dev.skiff.handler;

import java.util.Map;

/**
 * Zeebe metadata of a task (the {@code zeebe} member of the task frame). Keys are decimal
 * strings, as on the wire; the optional ones are null when skiff did not send them.
 */
public record Job(String key, String processInstanceKey, String bpmnProcessId,
    int processDefinitionVersion, String elementId, int retries, String worker,
    String processDefinitionKey, String elementInstanceKey, String tenantId) {

  static Job from(Map<String, Object> z) {
    return new Job(Frames.str(z, "key", ""), Frames.str(z, "process_instance_key", ""),
        Frames.str(z, "bpmn_process_id", ""), (int) Frames.integer(z, "process_definition_version", 0),
        Frames.str(z, "element_id", ""), (int) Frames.integer(z, "retries", 0),
        Frames.str(z, "worker", ""), Frames.str(z, "process_definition_key", null),
        Frames.str(z, "element_instance_key", null), Frames.str(z, "tenant_id", null));
  }
}
