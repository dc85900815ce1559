#!/bin/sh
# The test app of the local e2e tier (busybox sh). It records what happens to it, one line per event,
# in $EVENTS (on a volume the test reads): "<uptime seconds> <event> [detail]". /proc/uptime is the
# same clock on the host and in every container (no time namespace), so the test compares these
# stamps with its own. Runs busybox httpd on 127.0.0.1:$APP_PORT; every request to /cgi-bin/* is
# recorded with its method, path and body.
#
# Signals: TERM -> "TERM", then $SHUTDOWN_WORK seconds of "shutdown work", then "exit" and exit 0.
#          QUIT -> "QUIT", then 1 s of work, "exit", exit 0.   USR1 -> "USR1".
EVENTS=${EVENTS:-/data/events}
ev() { read -r up _ </proc/uptime; echo "$up $*" >>"$EVENTS"; }

mkdir -p /tmp/www/cgi-bin
cat >/tmp/www/cgi-bin/hook <<'CGI'
#!/bin/sh
body=
[ "${CONTENT_LENGTH:-0}" -gt 0 ] && body=$(head -c "$CONTENT_LENGTH")
read -r up _ </proc/uptime
echo "$up http $REQUEST_METHOD $REQUEST_URI body=$body" >>"${EVENTS:-/data/events}"
printf 'Content-Type: text/plain\r\n\r\nok\n'
CGI
chmod 0755 /tmp/www/cgi-bin/hook

httpd -f -p "127.0.0.1:${APP_PORT:-18080}" -h /tmp/www &
httpd_pid=$!
tick=

finish() {
  ev "$1"
  sleep "$2"
  kill "$httpd_pid" $tick 2>/dev/null
  ev exit
  exit 0
}
trap 'finish TERM "${SHUTDOWN_WORK:-0}"' TERM
trap 'finish QUIT 1' QUIT
trap 'ev USR1' USR1

ev start "uid=$(id -u)" "pid=$$"
while :; do
  sleep 1 &
  tick=$!
  wait "$tick"
done
