#!/usr/bin/env bash
# Watch one alert become a verified repair, on one machine, in under a minute.
#
#   scripts/demo.sh
#
# Starts a fake Kubernetes API server (examples/fakeapi.rs: a Deployment whose pods were
# OOMKilled), the aiops daemon pointed at it through a kubeconfig, and Debian's Alertmanager
# if installed (the alert goes in with amtool; without Alertmanager a curl posts the same
# webhook Alertmanager would). Then it shows the repair, the resolve, the knowledge base and
# the messages aiops sent to a webhook channel (a few lines of python3 stand in for the chat).
# Everything listens on 127.0.0.1, lives in a temp dir, and is stopped on exit.
#
# Environment: AIOPS_BIN, FAKEAPI_BIN (prebuilt binaries; otherwise `cargo build --release`
# builds both), DEMO_PAUSE (seconds to pause between steps, default 1; 0 in tests).
#
# How long: the loop itself runs in about 12 s, 9 of them the pauses before its steps
# (DEMO_PAUSE). The first run also compiles aiops and the fake API server in release mode:
# README ("Demo") has the measured time; later runs reuse the build.
set -euo pipefail
cd "$(dirname "$0")/.."

pause=${DEMO_PAUSE:-1}
if [[ -z "${AIOPS_BIN:-}" || -z "${FAKEAPI_BIN:-}" ]]; then
  target=${CARGO_TARGET_DIR:-target}
  if [[ -x "$target/release/aiops" && -x "$target/release/examples/fakeapi" ]]; then
    echo "building aiops and the fake API server (cargo build --release; up to date in seconds)..."
  else
    echo "building aiops and the fake API server (cargo build --release: the first build takes minutes, see README \"Demo\")..."
  fi
  built=$SECONDS
  cargo build --release --quiet --bin aiops --example fakeapi
  echo "built in $((SECONDS - built))s"
  AIOPS_BIN=${AIOPS_BIN:-$target/release/aiops}
  FAKEAPI_BIN=${FAKEAPI_BIN:-$target/release/examples/fakeapi}
fi
started_at=$SECONDS

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

n=0
step() { n=$((n + 1)); printf '\n== %d. %s\n' "$n" "$1"; sleep "$pause"; }
say() { printf '   %s\n' "$@"; }
fail() { printf 'demo failed: %s\n' "$*" >&2; for f in "$work"/*.log; do printf -- '--- %s\n' "$f" >&2; tail -n 20 "$f" >&2; done; exit 1; }
# A free loopback port: try random high ports until one refuses a connection.
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  fail "no free port"
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < until)) || fail "timed out waiting for $what"
    sleep 0.2
  done
}

step "A (fake) Kubernetes cluster"
say "A fake API server stands in for Kubernetes: it keeps Deployments, ReplicaSets and Pods" \
    "and rolls Deployments out like a controller. Its pods of prod/web were just OOMKilled."
"$FAKEAPI_BIN" "$work/kubeconfig" >"$work/fakeapi.log" 2>&1 &
pids+=($!)
wait_for 15 "the fake API server" test -s "$work/kubeconfig"
sed -n '1p' "$work/fakeapi.log" | sed 's/^/   /'

step "A chat for the messages"
say "A webhook channel stands in for Telegram/LINE/Slack/email: a tiny python3 HTTP server" \
    "that answers 200 and prints each message aiops POSTs ({event, subject, text, data})."
command -v python3 >/dev/null || fail "python3 is needed for the message receiver"
cat >"$work/receiver.py" <<'PY'
import http.server, json, sys

class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            msg = json.loads(body)
            text = "\n".join("  " + line for line in str(msg.get("text")).splitlines())
            print(f"[{msg.get('event')}] {msg.get('subject')}\n{text}", flush=True)
        except ValueError:
            print(f"(not JSON) {body[:200]!r}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
print(f"listening on {server.server_address[1]}", file=sys.stderr, flush=True)
server.serve_forever()
PY
python3 -u "$work/receiver.py" >"$work/messages.out" 2>"$work/receiver.log" &
pids+=($!)
wait_for 15 "the message receiver" grep -q '^listening on' "$work/receiver.log"
chatport=$(sed -nE 's/^listening on ([0-9]+)$/\1/p' "$work/receiver.log")
cat >"$work/aiops.yaml" <<YAML
notify:
  channels:
    chat: {type: webhook, url: "http://127.0.0.1:$chatport/aiops"}
  routes:
    - channels: [chat]            # every event but alert_fired, for every alert
YAML
say "receiver on http://127.0.0.1:$chatport; aiops.yaml:"
sed 's/^/     /' "$work/aiops.yaml"

step "The aiops daemon"
token=demo-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
say "aiops serve with the shipped rules and playbooks, a SQLite store in a temp dir, and a" \
    "kubeconfig to the fake cluster. Rule oom-handler: auto_repair=\"oom_handler\" runs the" \
    "oom_handler playbook (confirm OOMKilled, raise the limit by max(x1.2, +100Mi), wait for the rollout)."
AIOPS_LISTEN=127.0.0.1:0 \
AIOPS_DATABASE_URL="sqlite://$work/aiops.db?mode=rwc" \
AIOPS_WEBHOOK_TOKEN=$token \
AIOPS_RULES_DIR=rules AIOPS_PLAYBOOKS_DIR=playbooks \
AIOPS_KUBECONFIG="$work/kubeconfig" AIOPS_KUBE_CONTEXT=fake \
AIOPS_POLL_INTERVAL=200ms AIOPS_ROLLOUT_POLL=200ms AIOPS_LOG=info,sqlx=warn \
  "$AIOPS_BIN" --log-format json --config "$work/aiops.yaml" serve >"$work/aiops.log" 2>&1 &
pids+=($!)
wait_for 30 "the daemon to listen" grep -q '"message":"listening"' "$work/aiops.log"
addr=$(grep -m1 '"message":"listening"' "$work/aiops.log" | sed -E 's/.*"addr":"([^"]+)".*/\1/')
say "listening on http://$addr (webhook: POST /webhook/alertmanager, bearer token)"

labels=(alertname=ContainerOOMKilled auto_repair=oom_handler namespace=prod deployment=web severity=critical)
now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
started=$(now)
webhook() { # webhook STATUS ENDS_AT: the payload Alertmanager 0.25 would send
  local body
  body=$(printf '{"version":"4","status":"%s","receiver":"aiops","groupKey":"{}:{alertname=\\"ContainerOOMKilled\\"}","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://demo","truncatedAlerts":0,"alerts":[{"status":"%s","labels":{"alertname":"ContainerOOMKilled","auto_repair":"oom_handler","namespace":"prod","deployment":"web","severity":"critical"},"annotations":{"summary":"web was OOMKilled"},"startsAt":"%s","endsAt":"%s","generatorURL":""}]}' "$1" "$1" "$started" "$2")
  curl -sS -o /dev/null -w '   aiops answered %{http_code}\n' -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data "$body" "http://$addr/webhook/alertmanager"
}

if command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null; then
  step "Alertmanager (the real one, Debian's)"
  say "group_wait 0s, group_interval 1s, one webhook_config to aiops with the bearer token;" \
      "clustering off, storage in the temp dir."
  cat >"$work/alertmanager.yml" <<EOF
route:
  receiver: aiops
  group_by: [alertname, namespace, deployment]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: aiops
    webhook_configs:
      - url: http://$addr/webhook/alertmanager
        send_resolved: true
        http_config:
          authorization: {type: Bearer, credentials: $token}
EOF
  # A port found free can be taken by another program before Alertmanager binds it (tests run
  # beside the demo): when Alertmanager exits saying so, try another port.
  for attempt in 1 2 3 4 5; do
    amport=$(free_port)
    prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/am" \
      --web.listen-address="127.0.0.1:$amport" --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
    ampid=$!
    until=$((SECONDS + 30))
    until curl -sf "http://127.0.0.1:$amport/-/ready" >/dev/null 2>&1; do
      kill -0 "$ampid" 2>/dev/null || break
      ((SECONDS < until)) || { pids+=("$ampid"); fail "timed out waiting for Alertmanager"; }
      sleep 0.2
    done
    if kill -0 "$ampid" 2>/dev/null; then pids+=("$ampid"); break; fi
    grep -q "address already in use" "$work/alertmanager.log" || fail "Alertmanager exited"
    ((attempt < 5)) || fail "Alertmanager found no free port in 5 tries"
    say "port $amport was taken meanwhile; trying another"
  done
  say "ready on http://127.0.0.1:$amport"

  step "An alert fires (amtool alert add, as Prometheus would send it)"
  say "amtool alert add ${labels[*]}"
  amtool --alertmanager.url="http://127.0.0.1:$amport" alert add "${labels[@]}" \
    --annotation=summary="web was OOMKilled" --start="$started"
  resolve() {
    amtool --alertmanager.url="http://127.0.0.1:$amport" alert add "${labels[@]}" \
      --annotation=summary="web was OOMKilled" --start="$started" --end="$(now)"
    say "amtool alert add ... --end=now: Alertmanager sends the resolve within group_interval"
  }
else
  step "An alert fires (no Alertmanager installed: curl posts its webhook)"
  say "apt-get install prometheus-alertmanager to see the real one; the payload is the same."
  webhook firing 0001-01-01T00:00:00Z
  resolve() { webhook resolved "$(now)"; }
fi

step "aiops repairs it"
say "Alertmanager -> webhook -> stored -> rule oom-handler -> guards -> job -> playbook -> verification."
wait_for 30 "the repair" grep -qE '"message":"(job succeeded|job did not repair|job interrupted)' "$work/aiops.log"
grep -E '"message":"(job started|job succeeded|job did not repair)' "$work/aiops.log" \
  | sed -E 's/.*"message":"([^"]+)".*/   aiops: \1/' | head -n 4
grep -q '"message":"job succeeded"' "$work/aiops.log" || fail "the repair did not succeed"
say "What the fake cluster saw (only changes are printed):"
sed -n '2,$p' "$work/fakeapi.log" | sed 's/^/   /'
say "The job, from the store (aiops kb history prod/web):"
AIOPS_DATABASE_URL="sqlite://$work/aiops.db" "$AIOPS_BIN" kb history prod/web | sed 's/^/   /'

step "The alert resolves: time to recover"
resolve
wait_for 30 "the time to recover" sh -c "AIOPS_DATABASE_URL='sqlite://$work/aiops.db' '$AIOPS_BIN' kb history prod/web | grep -q 'recovered in'"
AIOPS_DATABASE_URL="sqlite://$work/aiops.db" "$AIOPS_BIN" kb history prod/web | sed 's/^/   /'

step "The knowledge base (aiops kb stats)"
AIOPS_DATABASE_URL="sqlite://$work/aiops.db" "$AIOPS_BIN" kb stats | sed 's/^/   /'

step "Messages"
say "Every message is written to the store with the state change that causes it, then sent" \
    "(retried on 5xx/429). What the chat received:"
wait_for 15 "the repair's messages" grep -q '^\[auto_repair_success\]' "$work/messages.out"
sed 's/^/   /' "$work/messages.out"
say "A repair that fails escalates along the rule's chain; the escalation message lists every" \
    "step tried. See README, Notifications, for Telegram, LINE, Slack and email."
printf '\ndemo done in %ds: alert -> repair -> verified -> resolved -> time to recover recorded.\n' "$((SECONDS - started_at))"
