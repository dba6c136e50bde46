// Command risk_scorer is the underwriting example's `risk-score` job worker, written with
// the Go SDK (the same scoring as examples/python/risk_scorer.py).
//
// It computes a deterministic risk score (0-100) from the application's variables
//
//	{"amount": 250000, "applicant": {"age": 41, "priorClaims": 0}}
//
// and completes the job with {"riskScore": ..., "riskFactors": [...]}. Missing input fails
// the job with retries 0 (an incident: retrying cannot fix it). Run it next to skiff:
// SKIFF_SOCKET=... go run ./risk_scorer
package main

import (
	"context"
	"fmt"
	"log"

	skiff "skiff/handler"
)

type application struct {
	Amount    *float64 `json:"amount"`
	Applicant struct {
		Age         *int64 `json:"age"`
		PriorClaims int64  `json:"priorClaims"`
	} `json:"applicant"`
}

// riskScore is pure, so a redelivered task gets the same answer.
func riskScore(amount float64, age, priorClaims int64) (int64, []string) {
	score, factors := int64(20), []string{}
	if points := minInt(40, int64(amount/25000)); points > 0 {
		score += points
		factors = append(factors, fmt.Sprintf("amount +%d", points))
	}
	switch {
	case age < 25:
		score += 20
		factors = append(factors, "young applicant +20")
	case age > 70:
		score += 15
		factors = append(factors, "senior applicant +15")
	}
	if points := minInt(30, 10*priorClaims); points > 0 {
		score += points
		factors = append(factors, fmt.Sprintf("prior claims +%d", points))
	}
	return maxInt(0, minInt(100, score)), factors
}

func minInt(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func score(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
	var app application
	if err := t.Decode(&app); err != nil || app.Amount == nil || app.Applicant.Age == nil {
		return nil, skiff.Failed("variables 'amount' and 'applicant.age' are required", 0, 0, nil)
	}
	value, factors := riskScore(*app.Amount, *app.Applicant.Age, app.Applicant.PriorClaims)
	return skiff.Vars{"riskScore": value, "riskFactors": factors}, nil
}

func main() {
	h := skiff.New("risk-scorer", skiff.Capacity(4))
	h.Job("risk-score", score)
	if err := h.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
