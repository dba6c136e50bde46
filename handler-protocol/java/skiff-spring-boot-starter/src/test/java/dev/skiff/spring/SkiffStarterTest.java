package dev.skiff.spring;

import static org.assertj.core.api.Assertions.assertThat;

import dev.skiff.handler.BpmnError;
import dev.skiff.handler.DeadLetter;
import dev.skiff.handler.FakeSkiff;
import dev.skiff.handler.Job;
import dev.skiff.handler.KafkaRecord;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.context.annotation.Import;
import org.springframework.stereotype.Component;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;

@SpringBootTest(classes = SkiffStarterTest.App.class, properties = {
    "skiff.name=spring-test", "skiff.capacity=3", "skiff.exit-on-drain=false",
    "underwriting.job-type=risk-score"})
class SkiffStarterTest {
  static final FakeSkiff SKIFF;

  static {
    try {
      SKIFF = new FakeSkiff();
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  @DynamicPropertySource
  static void socket(DynamicPropertyRegistry registry) {
    registry.add("skiff.socket", () -> SKIFF.path.toString());
  }

  @AfterAll
  static void close() throws IOException {
    SKIFF.close();
  }

  @SpringBootApplication
  @Import(Workers.class) // scanning skips the nested classes of a test class
  static class App {}

  record Applicant(int age) {}

  record Application(double amount, Applicant applicant) {}

  record Score(int riskScore, List<String> factors) {}

  record Event(String policyId, boolean poison) {}

  @Component
  static class Workers {
    @SkiffJob("${underwriting.job-type}")
    Score score(@VariablesAsType Application app) {
      return new Score(app.amount() > 1000 ? 80 : 20, List.of("age " + app.applicant().age()));
    }

    @SkiffJob("named")
    Map<String, Object> named(@Variable long amount, @Variable("applicant") Applicant who,
        Job job) {
      return Map.of("amount", amount, "age", who.age(), "key", job.key());
    }

    @SkiffJob("reject")
    void reject() {
      throw new BpmnError("POLICY_REJECTED", "amount too large");
    }

    @SkiffJob("nothing")
    void nothing() {}

    @SkiffTopic("business.policy.issued.v1")
    void issued(@RecordValue Event e, KafkaRecord record) {
      if (e.poison()) {
        throw new DeadLetter("poison " + e.policyId() + " at offset " + record.offset());
      }
    }
  }

  @Autowired
  SkiffRunner runner;

  @Test
  @SuppressWarnings("unchecked")
  void servesTheAnnotatedMethodsUntilDrained() throws Exception {
    FakeSkiff.Peer peer = SKIFF.accept();
    Map<String, Object> hello = peer.handshake();
    assertThat(hello).containsEntry("name", "spring-test").containsEntry("capacity", 3L);
    assertThat((List<Object>) hello.get("job_types"))
        .containsExactlyInAnyOrder("risk-score", "named", "reject", "nothing");
    assertThat(hello.get("topics")).isEqualTo(List.of("business.policy.issued.v1"));

    assertThat(result(peer, FakeSkiff.task("risk-score",
        Map.of("amount", 5000, "applicant", Map.of("age", 41), "extra", "ignored"))))
        .containsEntry("type", "complete")
        .containsEntry("variables", Map.of("riskScore", 80L, "factors", List.of("age 41")));
    assertThat(result(peer, FakeSkiff.task("named",
        Map.of("amount", 7, "applicant", Map.of("age", 30)))))
        .containsEntry("variables", Map.of("amount", 7L, "age", 30L, "key", "2251799813685321"));
    assertThat(result(peer, FakeSkiff.task("named", Map.of())))
        .containsEntry("type", "fail")
        .hasEntrySatisfying("message", m -> assertThat(m.toString()).contains("amount"));
    assertThat(result(peer, FakeSkiff.task("reject", Map.of())))
        .containsEntry("type", "bpmn_error").containsEntry("code", "POLICY_REJECTED")
        .containsEntry("message", "amount too large");
    assertThat(result(peer, FakeSkiff.task("nothing", Map.of())))
        .containsEntry("type", "complete").doesNotContainKey("variables");
    assertThat(result(peer, FakeSkiff.record("business.policy.issued.v1",
        Map.of("policyId", "P-1", "poison", false)))).containsEntry("type", "ack");
    assertThat(result(peer, FakeSkiff.record("business.policy.issued.v1",
        Map.of("policyId", "P-2", "poison", true))))
        .containsEntry("type", "nack").containsEntry("dead_letter", true)
        .containsEntry("message", "poison P-2 at offset 17");

    peer.send(Map.of("type", "drain", "deadline", System.currentTimeMillis() + 5000));
    assertThat(peer.recv()).containsEntry("type", "<closed>");
    for (int i = 0; i < 100 && !runner.isFinished(); i++) {
      Thread.sleep(50);
    }
    assertThat(runner.isFinished()).isTrue();
  }

  private static Map<String, Object> result(FakeSkiff.Peer peer, Map<String, Object> task)
      throws Exception {
    peer.send(task);
    Map<String, Object> r = peer.recv();
    assertThat(r).containsEntry("id", task.get("id"));
    return r;
  }
}
