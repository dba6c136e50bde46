"""Small BPMN generators for integration tests: each test deploys its own process."""

HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" '
    'id="defs-{pid}" targetNamespace="http://skiff.io/tests">\n'
)


def service_task(pid: str, job_type: str, retries: int = 3, error_code: str = "") -> str:
    """start -> service task (job_type) -> end "done"; with error_code, an error boundary
    event on the task leads to end "rejected"."""
    xml = HEAD.format(pid=pid)
    if error_code:
        xml += f'  <bpmn:error id="err-{pid}" errorCode="{error_code}" />\n'
    xml += f'  <bpmn:process id="{pid}" isExecutable="true">\n'
    xml += '    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>\n'
    xml += (
        '    <bpmn:serviceTask id="work"><bpmn:extensionElements>'
        f'<zeebe:taskDefinition type="{job_type}" retries="{retries}" />'
        '</bpmn:extensionElements><bpmn:incoming>f1</bpmn:incoming>'
        '<bpmn:outgoing>f2</bpmn:outgoing></bpmn:serviceTask>\n'
    )
    xml += '    <bpmn:endEvent id="done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>\n'
    xml += '    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />\n'
    xml += '    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="done" />\n'
    if error_code:
        xml += (
            '    <bpmn:boundaryEvent id="caught" attachedToRef="work">'
            '<bpmn:outgoing>f3</bpmn:outgoing>'
            f'<bpmn:errorEventDefinition errorRef="err-{pid}" /></bpmn:boundaryEvent>\n'
            '    <bpmn:endEvent id="rejected"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>\n'
            '    <bpmn:sequenceFlow id="f3" sourceRef="caught" targetRef="rejected" />\n'
        )
    xml += "  </bpmn:process>\n</bpmn:definitions>\n"
    return xml


def message_start(pid: str, message: str, job_type: str) -> str:
    """message start event (message name) -> service task (job_type) -> end "done"."""
    xml = HEAD.format(pid=pid)
    xml += f'  <bpmn:message id="msg-{pid}" name="{message}" />\n'
    xml += f'  <bpmn:process id="{pid}" isExecutable="true">\n'
    xml += ('    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing>'
            f'<bpmn:messageEventDefinition messageRef="msg-{pid}" /></bpmn:startEvent>\n')
    xml += (
        '    <bpmn:serviceTask id="work"><bpmn:extensionElements>'
        f'<zeebe:taskDefinition type="{job_type}" />'
        '</bpmn:extensionElements><bpmn:incoming>f1</bpmn:incoming>'
        '<bpmn:outgoing>f2</bpmn:outgoing></bpmn:serviceTask>\n'
    )
    xml += '    <bpmn:endEvent id="done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>\n'
    xml += '    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />\n'
    xml += '    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="done" />\n'
    xml += "  </bpmn:process>\n</bpmn:definitions>\n"
    return xml
