package dev.skiff.examples.underwriting;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/** Serves the {@code risk-score} job type through skiff until skiff drains it. */
@SpringBootApplication
public class RiskScorerApplication {
  public static void main(String[] args) {
    SpringApplication.run(RiskScorerApplication.class, args);
  }
}
