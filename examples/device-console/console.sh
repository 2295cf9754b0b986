#!/bin/sh
# A stand-in for the device's WebREPL: one process per console socket (wssd
# runs it, a text message is a line on stdin, each line it prints a message).
# It understands a few commands and never evaluates what it reads: no shell
# access through the console.
led=off
if [ "${HTTPS:-}" = on ]; then scheme=wss; else scheme=ws; fi
printf 'device console, %s over %s; type help\n' "${REMOTE_USER:-?}" "$scheme"
while IFS= read -r line; do
    set -f
    # shellcheck disable=SC2086 # split the line into words, no globbing
    set -- $line
    set +f
    case "${1:-}" in
        help) printf '%s\n' 'commands: help, echo TEXT, led on|off, led, uptime, whoami' ;;
        echo) shift; printf '%s\n' "$*" ;;
        led)
            case "${2:-}" in
                on | off) led=$2; printf 'led %s\n' "$led" ;;
                '') printf 'led %s\n' "$led" ;;
                *) printf '%s\n' 'usage: led on|off' ;;
            esac ;;
        uptime) printf 'up %s s\n' "$(cut -d. -f1 /proc/uptime 2>/dev/null || echo '?')" ;;
        whoami) printf '%s\n' "${REMOTE_USER:-?}" ;;
        '') ;;
        *) printf 'unknown command: %s (type help)\n' "$1" ;;
    esac
done
