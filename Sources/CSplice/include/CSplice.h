#ifndef AIRLOCK_CSPLICE_H
#define AIRLOCK_CSPLICE_H

#include <stddef.h>
#include <pthread.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/* epoll and eventfd come in through this header too. */

/* The Linux calls the gateway's socket loop needs that Swift's Glibc module does not
 * import (they are GNU extensions): splice(2), pipe2(2), accept4(2), pthread_setname_np(3) and the pipe size
 * fcntl. Thin wrappers; errors come back as -1 with errno set, as from the calls. */

/* splice(2) without offsets, non-blocking, pages moved where possible. */
ssize_t airlock_splice(int fd_in, int fd_out, size_t len);

/* A non-blocking, close-on-exec pipe; fds[0] is the read end. */
int airlock_pipe(int fds[2]);

/* Sets the pipe's capacity (F_SETPIPE_SZ); returns the capacity now in effect. */
int airlock_set_pipe_size(int fd, int size);

/* accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC, peer address not returned. */
int airlock_accept(int listener);

/* Names a thread of this process (at most 15 bytes are kept), as top -H and perf show it. */
void airlock_name_thread(pthread_t thread, const char *name);

#endif
