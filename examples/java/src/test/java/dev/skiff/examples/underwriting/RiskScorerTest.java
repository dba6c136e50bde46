package dev.skiff.examples.underwriting;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.skiff.handler.JobFailed;
import java.util.List;
import org.junit.jupiter.api.Test;

class RiskScorerTest {
  private final RiskScorer scorer = new RiskScorer();

  @Test
  void scoresLikeThePythonExample() {
    assertThat(RiskScorer.riskScore(250000, 41, 0))
        .isEqualTo(new RiskScorer.Score(30, List.of("amount +10")));
    assertThat(RiskScorer.riskScore(1_000_000, 22, 1)).isEqualTo(new RiskScorer.Score(90,
        List.of("amount +40", "young applicant +20", "prior claims +10")));
    assertThat(RiskScorer.riskScore(5_000_000, 80, 9).riskScore()).isEqualTo(100);
  }

  @Test
  void missingInputRaisesAnIncident() {
    assertThatThrownBy(() -> scorer.score(new RiskScorer.Application(5.0, null)))
        .isInstanceOfSatisfying(JobFailed.class, e -> assertThat(e.retries()).isZero());
  }
}
