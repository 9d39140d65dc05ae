#define _GNU_SOURCE
#include "CSplice.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

ssize_t airlock_splice(int fd_in, int fd_out, size_t len) {
    return splice(fd_in, NULL, fd_out, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

int airlock_pipe(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

int airlock_set_pipe_size(int fd, int size) {
    if (fcntl(fd, F_SETPIPE_SZ, size) < 0) return fcntl(fd, F_GETPIPE_SZ);
    return fcntl(fd, F_GETPIPE_SZ);
}

int airlock_accept(int listener) {
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

void airlock_name_thread(pthread_t thread, const char *name) {
    (void)pthread_setname_np(thread, name);
}
