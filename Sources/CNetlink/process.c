#define _GNU_SOURCE
#include "cnl_process.h"
#include <unistd.h>
#include <sys/wait.h>
#include <sys/mount.h>
#include <sched.h>

#include <errno.h>
#include <sys/prctl.h>

int cnl_set_dumpable(int dumpable) {
    return prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0, 0, 0) == 0 ? 0 : -errno;
}

int cnl_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0) == 0 ? 0 : -errno;
}

int cnl_probe_fresh_proc(void) {
    if (unshare(CLONE_NEWPID) < 0) return errno;
    pid_t child = fork();
    if (child < 0) return errno;
    if (child == 0) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(errno & 0xff);
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) _exit(errno & 0xff);
        _exit(0);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return errno;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : ECHILD;
}
