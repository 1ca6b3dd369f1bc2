# The per-job shim: runs one job and writes its exit status, even if the daemon is gone.
#
# Started by the daemon as `/bin/sh shim.sh EXIT_FILE COMMAND [CWD]` in a new session,
# so the shim is the session leader and process-group leader of the job. Only a parent can
# collect a child's exit status: if the daemon is killed, the shim lives on, waits for the
# job, and leaves its status in EXIT_FILE for the restarted daemon. The file's mtime is
# the end time. EXIT_FILE is named for the restarted daemon to find the shim by; the
# status goes to the shim's standard input, which the daemon opened (for writing) on that
# file: the file belongs to the daemon's user, so a job run as its submitter cannot
# write (forge) its own status. The job itself gets /dev/null as its standard input.
#
# CWD: given when the job runs as its submitter (the daemon is root): the shim, already
# that user, changes directory itself, so a directory the user could not enter stays shut
# (a chdir before the switch of user would be done as root). Status 126 if it cannot.
#
# POSIX sh, not Python: it costs ~1 ms per job instead of ~20 ms of interpreter start.
#
# `trap :` (a no-op handler, not `trap ''`): the shim survives the group-wide SIGTERM of a
# cancel, while the job, whose caught signals reset to default on exec, receives it. The
# shell runs the handler only after the foreground job has ended.
# `trap '' USR1`: ignored, and ignored signals stay ignored across exec, so the checkpoint
# request (SIGUSR1 to the whole group) never kills the shim, the job's shell, or a process
# that did not ask for it; a job that wants it installs a handler (gpugate.preemptible()).
trap : TERM INT HUP
trap '' USR1
if [ -n "${3:-}" ] && ! cd "$3"; then
    echo 126 >&0
    exit 126
fi
/bin/sh -c "$2" </dev/null
status=$?
# A reader that catches the file half-written sees no status yet, and the shim is still
# alive then, so it simply looks again later: no rename is needed.
echo "$status" >&0
exit "$status"
