# Sourced by etcdctl.sh and gateway.sh.
# wait_quiet PID FILE: wait while PID runs until FILE has stopped growing for 0.6 s (quiet time
# counts from its first byte on; nothing at all within 2 s counts as quiet too), 4 s at most.
wait_quiet() {
    local p=$1 f=$2 i=0 quiet=0 last=-1 size
    while [ $i -lt 80 ] && kill -0 "$p" 2>/dev/null; do
        sleep 0.05
        i=$((i + 1))
        size=$(wc -c <"$f")
        if [ "$size" = "$last" ] && { [ "$size" -gt 0 ] || [ $i -ge 40 ]; }; then
            quiet=$((quiet + 1))
        else
            quiet=0
            last=$size
        fi
        [ $quiet -ge 12 ] && break
    done
    return 0
}
