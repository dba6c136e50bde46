//! Underwriting example: the `risk-score` job worker, written with the Rust SDK.
//!
//! Computes a deterministic risk score (0-100) from the application's variables
//! `{"amount": 250000, "applicant": {"age": 41, "priorClaims": 0}}` and completes the job with
//! `{"riskScore": ..., "riskFactors": [...]}`; missing input fails with retries 0 (an incident).
//! Run next to skiff: `SKIFF_SOCKET=... cargo run --release --example risk-scorer`
//! (in handler-protocol/rust).

use serde_json::json;
use skiff_handler::{Handler, HandlerError};

/// Pure, so a redelivered task gets the same answer.
fn risk_score(amount: f64, age: i64, prior_claims: i64) -> (i64, Vec<String>) {
    let (mut score, mut factors) = (20, Vec::new());
    let amount_points = ((amount / 25000.0).floor() as i64).min(40);
    if amount_points > 0 {
        score += amount_points;
        factors.push(format!("amount +{amount_points}"));
    }
    if age < 25 {
        score += 20;
        factors.push("young applicant +20".to_string());
    } else if age > 70 {
        score += 15;
        factors.push("senior applicant +15".to_string());
    }
    let claim_points = (10 * prior_claims).min(30);
    if claim_points > 0 {
        score += claim_points;
        factors.push(format!("prior claims +{claim_points}"));
    }
    (score.clamp(0, 100), factors)
}

fn main() {
    let mut app = Handler::new("risk-scorer", 4);
    app.job("risk-score", |task| {
        let v = &task.variables;
        let (Some(amount), Some(age)) = (v["amount"].as_f64(), v["applicant"]["age"].as_i64())
        else {
            // Retrying cannot fix missing input: retries 0 raises an incident right away.
            let msg = "variables 'amount' and 'applicant.age' are required";
            return Err(HandlerError::failed(msg, Some(0), None));
        };
        let prior_claims = v["applicant"]["priorClaims"].as_i64().unwrap_or(0);
        let (score, factors) = risk_score(amount, age, prior_claims);
        Ok(Some(json!({"riskScore": score, "riskFactors": factors})))
    });
    if let Err(e) = app.run() {
        eprintln!("risk-scorer: {e}");
        std::process::exit(1);
    }
}
