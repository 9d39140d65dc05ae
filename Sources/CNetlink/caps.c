// Capabilities through libcap, and the privilege drop of the gateway process.
#define _GNU_SOURCE
#include "cnl_caps.h"
#include "cnl_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/capability.h>
#include <sys/prctl.h>

int cnl_cap_last_cap(void) {
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    char buffer[16] = { 0 };
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    int e = errno;
    close(fd);
    if (n <= 0) return n < 0 ? -e : -EIO;
    return atoi(buffer);
}

static uint64_t flag_bits(cap_t caps, cap_flag_t flag, int last) {
    uint64_t bits = 0;
    for (int cap = 0; cap <= last && cap < 64; cap++) {
        cap_flag_value_t value = CAP_CLEAR;
        if (cap_get_flag(caps, (cap_value_t)cap, flag, &value) == 0 && value == CAP_SET) bits |= (uint64_t)1 << cap;
    }
    return bits;
}

int cnl_cap_read(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable,
                 uint64_t *bounding, uint64_t *ambient) {
    int last = cnl_cap_last_cap();
    if (last < 0) return last;
    cap_t caps = cap_get_proc();
    if (!caps) return -errno;
    *effective = flag_bits(caps, CAP_EFFECTIVE, last);
    *permitted = flag_bits(caps, CAP_PERMITTED, last);
    *inheritable = flag_bits(caps, CAP_INHERITABLE, last);
    cap_free(caps);
    *bounding = 0;
    *ambient = 0;
    for (int cap = 0; cap <= last && cap < 64; cap++) {
        if (cap_get_bound((cap_value_t)cap) == 1) *bounding |= (uint64_t)1 << cap;
        if (cap_get_ambient((cap_value_t)cap) == 1) *ambient |= (uint64_t)1 << cap;
    }
    return 0;
}

void *cnl_cap_new_empty(void) {
    cap_t caps = cap_init();
    if (caps && cap_clear(caps) < 0) { cap_free(caps); return NULL; }
    return caps;
}

void *cnl_cap_new_with(const int *values, size_t count) {
    cap_t caps = cnl_cap_new_empty();
    if (!caps) return NULL;
    cap_value_t list[64];
    if (count > 64) { cap_free(caps); errno = EINVAL; return NULL; }
    for (size_t i = 0; i < count; i++) list[i] = (cap_value_t)values[i];
    if (count == 0) return caps;
    if (cap_set_flag(caps, CAP_PERMITTED, (int)count, list, CAP_SET) < 0 ||
        cap_set_flag(caps, CAP_EFFECTIVE, (int)count, list, CAP_SET) < 0 ||
        cap_set_flag(caps, CAP_INHERITABLE, (int)count, list, CAP_SET) < 0) {
        cap_free(caps);
        return NULL;
    }
    return caps;
}

void cnl_cap_free(void *caps) {
    if (caps) cap_free(caps);
}

int cnl_cap_name(int value, char *buffer, size_t size) {
    char *name = cap_to_name((cap_value_t)value);
    if (!name) return -errno;
    snprintf(buffer, size, "%s", name);
    cap_free(name);
    return 0;
}

int cnl_drop_process_privileges(uid_t uid, gid_t gid, const gid_t *groups, size_t count, int *step) {
    int last = cnl_cap_last_cap();
    if (last < 0) { *step = CNL_STEP_BOUNDING_SET; return last; }
    for (int cap = 0; cap <= last; cap++) {
        if (cap_drop_bound((cap_value_t)cap) < 0 && errno != EINVAL) { *step = CNL_STEP_BOUNDING_SET; return -errno; }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) { *step = CNL_STEP_AMBIENT; return -errno; }
    if (setgroups(count, groups) < 0) { *step = CNL_STEP_SETGROUPS; return -errno; }
    if (setresgid(gid, gid, gid) < 0) { *step = CNL_STEP_SETGID; return -errno; }
    if (setresuid(uid, uid, uid) < 0) { *step = CNL_STEP_SETUID; return -errno; }
    cap_t empty = cnl_cap_new_empty();
    if (!empty) { *step = CNL_STEP_CAPSET; return -errno; }
    int r = cap_set_proc(empty);
    int e = errno;
    cap_free(empty);
    if (r < 0) { *step = CNL_STEP_CAPSET; return -e; }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) { *step = CNL_STEP_NO_NEW_PRIVS; return -errno; }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) { *step = CNL_STEP_NO_NEW_PRIVS; return -errno; }
    return 0;
}

#define CNL_STR2(x) #x
#define CNL_STR(x) CNL_STR2(x)
const char *cnl_libcap_version(void) {
    return CNL_STR(LIBCAP_MAJOR) "." CNL_STR(LIBCAP_MINOR);
}

int cnl_keep_only_caps(const int *values, size_t count) {
    uint64_t keep = 0;
    for (size_t i = 0; i < count; i++) {
        if (values[i] >= 0 && values[i] < 64) keep |= (uint64_t)1 << values[i];
    }
    int last = cnl_cap_last_cap();
    if (last < 0) last = 63;
    for (int cap = 0; cap <= last && cap < 64; cap++) {
        if (keep & ((uint64_t)1 << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) return -errno;
    cap_t caps = cap_init();
    if (caps == NULL) return -errno;
    for (int cap = 0; cap <= last && cap < 64; cap++) {
        if (!(keep & ((uint64_t)1 << cap))) continue;
        cap_value_t value = cap;
        if (cap_set_flag(caps, CAP_PERMITTED, 1, &value, CAP_SET) < 0 ||
            cap_set_flag(caps, CAP_EFFECTIVE, 1, &value, CAP_SET) < 0) {
            int e = errno;
            cap_free(caps);
            return -e;
        }
    }
    int r = cap_set_proc(caps);
    int e = errno;
    cap_free(caps);
    if (r < 0) return -e;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    return 0;
}
