#define _GNU_SOURCE
#include "cnl_process.h"

#include <errno.h>
#include <sys/prctl.h>

int cnl_set_dumpable(int dumpable) {
    return prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0, 0, 0) == 0 ? 0 : -errno;
}

int cnl_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0) == 0 ? 0 : -errno;
}
