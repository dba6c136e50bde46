package dev.skiff.examples.underwriting;

import dev.skiff.handler.JobFailed;
import dev.skiff.spring.SkiffJob;
import dev.skiff.spring.VariablesAsType;
import java.util.ArrayList;
import java.util.List;
import org.springframework.stereotype.Component;

/**
 * The {@code risk-score} job worker: a deterministic risk score (0-100) from the application's
 * variables {@code {"amount": 250000, "applicant": {"age": 41, "priorClaims": 0}}}, completing
 * the job with {@code {"riskScore": ..., "riskFactors": [...]}}. The process
 * (examples/underwriting/underwriting.bpmn) issues the policy when riskScore < 70. Same rules as
 * examples/python/risk_scorer.py.
 */
@Component
public class RiskScorer {
  /** The job's variables (other variables are ignored). */
  public record Application(Double amount, Applicant applicant) {}

  public record Applicant(Integer age, Integer priorClaims) {}

  /** The completion variables. */
  public record Score(int riskScore, List<String> riskFactors) {}

  @SkiffJob("${underwriting.risk-score.job-type}")
  public Score score(@VariablesAsType Application app) {
    if (app.amount() == null || app.applicant() == null || app.applicant().age() == null) {
      // Retrying cannot fix missing input: retries 0 raises an incident right away.
      throw new JobFailed("variables 'amount' and 'applicant.age' are required", 0, null, null);
    }
    int priorClaims = app.applicant().priorClaims() == null ? 0 : app.applicant().priorClaims();
    return riskScore(app.amount(), app.applicant().age(), priorClaims);
  }

  /** Pure function, so a redelivered job gets the same answer. */
  static Score riskScore(double amount, int age, int priorClaims) {
    int score = 20;
    List<String> factors = new ArrayList<>();
    int amountPoints = (int) Math.min(40, Math.floor(amount / 25000));
    if (amountPoints > 0) {
      score += amountPoints;
      factors.add("amount +" + amountPoints);
    }
    if (age < 25) {
      score += 20;
      factors.add("young applicant +20");
    } else if (age > 70) {
      score += 15;
      factors.add("senior applicant +15");
    }
    int claimPoints = Math.min(30, 10 * priorClaims);
    if (claimPoints > 0) {
      score += claimPoints;
      factors.add("prior claims +" + claimPoints);
    }
    return new Score(Math.max(0, Math.min(100, score)), factors);
  }
}
