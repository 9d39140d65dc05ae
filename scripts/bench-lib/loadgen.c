/*
 * Load generators for scripts/bench, compiled by the harness (cc -O2 -pthread).
 * Every mode is bounded in count and in time, and prints one JSON object on stdout.
 *
 *   loadgen tunnel --connect A:P [--via-proxy HOST:PORT] --host H --path /bytes/N
 *                  --bytes N --streams K --timeout S
 *       K parallel streams, each (optionally) opens a CONNECT tunnel through the proxy
 *       at A:P, then GETs PATH and reads N body bytes. Timing starts when every tunnel
 *       is up and ends with the last byte: {"bytes","seconds","mb_per_s","complete"}.
 *
 *   loadgen hold --connect A:P --via-proxy HOST:PORT --count N --window W --timeout S
 *       Opens N idle CONNECT tunnels, at most W handshakes in flight, prints
 *       {"opened","failed","seconds"} and keeps them open until stdin closes (or the
 *       timeout passes), then closes them all.
 *
 *   loadgen relay --listen A:P [--max-seconds S]
 *       A reference CONNECT proxy in ~80 lines: a thread per direction, bytes moved with
 *       splice(2) through a pipe, never copied to user space. No policy, no audit: it
 *       shows what the copy path costs, not a product. Exits after --max-seconds.
 *
 *   loadgen dns --server A:P --names FILE --sockets S --window W --duration S
 *               --max N [--timeout-ms T]
 *       UDP A queries for the names in FILE (lines "NAME ok|nx": the answer expected),
 *       W in flight per socket: {"sent","answered","lost","wrong","qps","p50_us","p99_us"}.
 *
 *   loadgen exec --timeout S -- PROGRAM ARG...
 *       Times one run of PROGRAM, from posix_spawn to the waitpid that reaps it:
 *       {"ms","status","timed_out","stderr"} (stdin and stdout /dev/null, stderr's tail kept for the
 *       error). A command's own cost, without the timing language's spawn around it (a
 *       Python subprocess.run adds about a millisecond to every command it times). Killed
 *       (SIGKILL) after S seconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static struct sockaddr_in parse_addr(const char *s) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *colon = strrchr(buf, ':');
    if (!colon) die("address must be A.B.C.D:PORT");
    *colon = 0;
    if (inet_pton(AF_INET, buf, &sa.sin_addr) != 1) die("bad IPv4 address");
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    return sa;
}

static const char *arg(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return fallback;
}

/* Reads until the end of an HTTP header block; returns the bytes read past it in `extra`. */
static int read_header(int fd, char *buf, size_t cap, size_t *total, size_t *header_len, double deadline) {
    *total = 0;
    while (*total < cap - 1) {
        if (now() > deadline) return -1;
        ssize_t n = recv(fd, buf + *total, cap - 1 - *total, 0);
        if (n <= 0) return -1;
        *total += (size_t)n;
        buf[*total] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            *header_len = (size_t)(end - buf) + 4;
            return 0;
        }
    }
    return -1;
}

static int set_timeouts(int fd, double seconds) {
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Connects to `sa` and, when `via` is set, opens a CONNECT tunnel to it. Returns the fd or -1. */
static int open_tunnel(struct sockaddr_in sa, const char *via, double deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    set_timeouts(fd, 10);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (via) {
        char req[512];
        int len = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", via, via);
        if (send(fd, req, (size_t)len, MSG_NOSIGNAL) != len) { close(fd); return -1; }
        char buf[4096];
        size_t total, hlen;
        if (read_header(fd, buf, sizeof buf, &total, &hlen, deadline) != 0 ||
            strncmp(buf + 8, " 200", 4) != 0 || total != hlen) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* ---------------------------------------------------------------- tunnel */

struct stream {
    struct sockaddr_in sa;
    const char *via, *host, *path;
    long long want, got;
    double deadline;
    int ok;
    pthread_barrier_t *ready;
    double finished;
};

static double g_start;

static void *stream_main(void *p) {
    struct stream *s = p;
    int fd = open_tunnel(s->sa, s->via, s->deadline);
    pthread_barrier_wait(s->ready); /* every tunnel up (or failed) before timing starts */
    pthread_barrier_wait(s->ready); /* main thread has taken the start time */
    if (fd < 0) return NULL;
    set_timeouts(fd, 2);
    char req[512];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", s->path, s->host);
    if (send(fd, req, (size_t)len, MSG_NOSIGNAL) != len) { close(fd); return NULL; }
    size_t cap = 1 << 18;
    char *buf = malloc(cap);
    size_t total, hlen;
    if (read_header(fd, buf, 65536, &total, &hlen, s->deadline) != 0 || strncmp(buf + 8, " 200", 4) != 0) {
        free(buf);
        close(fd);
        return NULL;
    }
    s->got = (long long)(total - hlen);
    while (s->got < s->want && now() < s->deadline) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
        s->got += n;
    }
    s->finished = now();
    s->ok = s->got >= s->want;
    free(buf);
    close(fd);
    return NULL;
}

static int run_tunnel(int argc, char **argv) {
    struct sockaddr_in sa = parse_addr(arg(argc, argv, "--connect", "127.0.0.1:3128"));
    const char *via = arg(argc, argv, "--via-proxy", NULL);
    const char *host = arg(argc, argv, "--host", "upstream.test");
    const char *path = arg(argc, argv, "--path", "/");
    long long bytes = atoll(arg(argc, argv, "--bytes", "0"));
    int streams = atoi(arg(argc, argv, "--streams", "1"));
    double timeout = atof(arg(argc, argv, "--timeout", "30"));
    if (streams < 1 || streams > 64 || bytes <= 0) die("need --bytes > 0 and 1..64 --streams");
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, (unsigned)streams + 1);
    struct stream *ss = calloc((size_t)streams, sizeof *ss);
    pthread_t *th = calloc((size_t)streams, sizeof *th);
    double deadline = now() + timeout;
    for (int i = 0; i < streams; i++) {
        ss[i] = (struct stream){sa, via, host, path, bytes, 0, deadline, 0, &ready, 0};
        pthread_create(&th[i], NULL, stream_main, &ss[i]);
    }
    pthread_barrier_wait(&ready);
    g_start = now();
    pthread_barrier_wait(&ready);
    long long got = 0;
    int complete = 1;
    double last = g_start;
    for (int i = 0; i < streams; i++) {
        pthread_join(th[i], NULL);
        got += ss[i].got;
        complete &= ss[i].ok;
        if (ss[i].finished > last) last = ss[i].finished;
    }
    if (!complete) last = now() < deadline ? now() : deadline;
    double secs = last - g_start;
    printf("{\"bytes\": %lld, \"seconds\": %.6f, \"mb_per_s\": %.3f, \"complete\": %s}\n", got, secs,
           secs > 0 ? (double)got / secs / 1e6 : 0.0, complete ? "true" : "false");
    return complete ? 0 : 1;
}

/* ---------------------------------------------------------------- hold */

static int run_hold(int argc, char **argv) {
    struct sockaddr_in sa = parse_addr(arg(argc, argv, "--connect", "127.0.0.1:3128"));
    const char *via = arg(argc, argv, "--via-proxy", NULL);
    int count = atoi(arg(argc, argv, "--count", "1000"));
    int window = atoi(arg(argc, argv, "--window", "64"));
    double timeout = atof(arg(argc, argv, "--timeout", "60"));
    if (!via || count < 1 || count > 20000 || window < 1) die("need --via-proxy, --count 1..20000, --window >= 1");
    double deadline = now() + timeout;
    int *fds = calloc((size_t)count, sizeof(int));
    int *state = calloc((size_t)count, sizeof(int)); /* 0 idle, 1 connecting, 2 sent, 3 open, -1 failed */
    size_t *have = calloc((size_t)count, sizeof(size_t));
    char (*bufs)[256] = calloc((size_t)count, 256);
    struct pollfd *pfd = calloc((size_t)count, sizeof *pfd);
    int *idx = calloc((size_t)count, sizeof(int));
    char req[512];
    int reqlen = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", via, via);
    int next = 0, inflight = 0, opened = 0, failed = 0;
    double start = now();
    while ((opened + failed) < count && now() < deadline) {
        while (inflight < window && next < count) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            fds[next] = fd;
            if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)) {
                state[next] = -1;
                failed++;
                if (fd >= 0) close(fd);
            } else {
                state[next] = 1;
                inflight++;
            }
            next++;
        }
        int n = 0;
        for (int i = 0; i < next; i++)
            if (state[i] == 1 || state[i] == 2) {
                pfd[n] = (struct pollfd){fds[i], state[i] == 1 ? POLLOUT : POLLIN, 0};
                idx[n++] = i;
            }
        if (n == 0) continue;
        if (poll(pfd, (nfds_t)n, 100) < 0 && errno != EINTR) break;
        for (int k = 0; k < n; k++) {
            int i = idx[k];
            if (!pfd[k].revents) continue;
            if (state[i] == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || send(fds[i], req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {
                    state[i] = -1; failed++; inflight--; close(fds[i]);
                } else {
                    state[i] = 2;
                }
            } else {
                ssize_t r = recv(fds[i], bufs[i] + have[i], 255 - have[i], 0);
                if (r <= 0) { state[i] = -1; failed++; inflight--; close(fds[i]); continue; }
                have[i] += (size_t)r;
                bufs[i][have[i]] = 0;
                if (strstr(bufs[i], "\r\n\r\n")) {
                    inflight--;
                    if (strncmp(bufs[i] + 8, " 200", 4) == 0) { state[i] = 3; opened++; }
                    else { state[i] = -1; failed++; close(fds[i]); }
                } else if (have[i] >= 255) {
                    state[i] = -1; failed++; inflight--; close(fds[i]);
                }
            }
        }
    }
    double secs = now() - start;
    printf("{\"opened\": %d, \"failed\": %d, \"seconds\": %.6f}\n", opened, count - opened, secs);
    fflush(stdout);
    /* Hold until the harness closes stdin, bounded by the timeout. */
    struct pollfd in = {0, POLLIN, 0};
    while (now() < deadline + 60) {
        int r = poll(&in, 1, 200);
        if (r > 0) {
            char c[64];
            if (read(0, c, sizeof c) <= 0) break;
        }
    }
    for (int i = 0; i < next; i++)
        if (state[i] == 3) close(fds[i]);
    return opened == count ? 0 : 1;
}

/* ---------------------------------------------------------------- relay */

struct pump {
    int in, out;
};

static void *pump_main(void *p) {
    struct pump *pu = p;
    int pipefd[2];
    if (pipe(pipefd) != 0) return NULL;
    fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20);
    for (;;) {
        ssize_t n = splice(pu->in, NULL, pipefd[1], NULL, 1 << 20, SPLICE_F_MOVE | SPLICE_F_MORE);
        if (n <= 0) break;
        while (n > 0) {
            ssize_t m = splice(pipefd[0], NULL, pu->out, NULL, (size_t)n, SPLICE_F_MOVE);
            if (m <= 0) goto done;
            n -= m;
        }
    }
done:
    shutdown(pu->out, SHUT_WR);
    close(pipefd[0]);
    close(pipefd[1]);
    return NULL;
}

static void *relay_conn(void *p) {
    int client = (int)(intptr_t)p;
    char buf[4096];
    size_t total, hlen;
    int upstream = -1;
    if (read_header(client, buf, sizeof buf, &total, &hlen, now() + 10) != 0) goto out;
    char host[256];
    int port;
    if (sscanf(buf, "CONNECT %255[^:]:%d ", host, &port) != 2) goto out;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &ai) != 0 || !ai) goto out;
    upstream = socket(AF_INET, SOCK_STREAM, 0);
    int ok = upstream >= 0 && connect(upstream, ai->ai_addr, ai->ai_addrlen) == 0;
    freeaddrinfo(ai);
    if (!ok) goto out;
    int one = 1;
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const char *reply = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (send(client, reply, strlen(reply), MSG_NOSIGNAL) < 0) goto out;
    if (total > hlen && send(upstream, buf + hlen, total - hlen, MSG_NOSIGNAL) < 0) goto out;
    struct pump down = {upstream, client}, up = {client, upstream};
    pthread_t t;
    pthread_create(&t, NULL, pump_main, &down);
    pump_main(&up);
    pthread_join(t, NULL);
out:
    if (upstream >= 0) close(upstream);
    close(client);
    return NULL;
}

static int run_relay(int argc, char **argv) {
    struct sockaddr_in sa = parse_addr(arg(argc, argv, "--listen", "127.0.0.1:3131"));
    double max_seconds = atof(arg(argc, argv, "--max-seconds", "3600"));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0) die("relay: cannot listen");
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)max_seconds);
    fprintf(stderr, "relay ready\n");
    double deadline = now() + max_seconds;
    while (now() < deadline) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 << 10);
        pthread_create(&t, &attr, relay_conn, (void *)(intptr_t)c);
        pthread_attr_destroy(&attr);
    }
    return 0;
}

/* ---------------------------------------------------------------- dns */

struct qname {
    unsigned char wire[260];
    int len;
    int expect_nx;
};

static int encode_name(const char *name, unsigned char *out) {
    int n = 0;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        int l = dot ? (int)(dot - p) : (int)strlen(p);
        if (l < 1 || l > 63 || n + l + 2 > 255) return -1;
        out[n++] = (unsigned char)l;
        memcpy(out + n, p, (size_t)l);
        n += l;
        p += l;
        if (*p == '.') p++;
    }
    out[n++] = 0;
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_dns(int argc, char **argv) {
    struct sockaddr_in sa = parse_addr(arg(argc, argv, "--server", "169.254.200.1:53"));
    const char *names_file = arg(argc, argv, "--names", NULL);
    int nsock = atoi(arg(argc, argv, "--sockets", "4"));
    int window = atoi(arg(argc, argv, "--window", "16"));
    double duration = atof(arg(argc, argv, "--duration", "3"));
    long long max = atoll(arg(argc, argv, "--max", "2000000"));
    double qtimeout = atof(arg(argc, argv, "--timeout-ms", "1000")) / 1000.0;
    if (!names_file || nsock < 1 || nsock > 64 || window < 1 || window > 1024) die("need --names, 1..64 sockets, 1..1024 window");
    FILE *f = fopen(names_file, "r");
    if (!f) die("cannot open names file");
    struct qname names[256];
    int nnames = 0;
    char line[300], word[280], expect[16];
    while (nnames < 256 && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%279s %15s", word, expect) != 2) continue;
        int l = encode_name(word, names[nnames].wire);
        if (l < 0) die("bad name in names file");
        names[nnames].len = l;
        names[nnames].expect_nx = strcmp(expect, "nx") == 0;
        nnames++;
    }
    fclose(f);
    if (nnames == 0) die("no names");

    int *fds = calloc((size_t)nsock, sizeof(int));
    /* per in-flight id: send time (0 = free) and expected answer */
    double *sent_at = calloc(65536, sizeof(double));
    int *expect_nx = calloc(65536, sizeof(int));
    int *inflight = calloc((size_t)nsock, sizeof(int));
    size_t lat_cap = (size_t)(max < 4000000 ? max : 4000000);
    double *lat = malloc(lat_cap * sizeof(double));
    size_t nlat = 0;
    long long sent = 0, answered = 0, wrong = 0, lost = 0;
    unsigned short next_id = 1;
    for (int i = 0; i < nsock; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0) die("udp socket");
    }
    /* ids are striped by socket: id % nsock == socket index, so a reply is matched on its own socket */
    struct pollfd *pfd = calloc((size_t)nsock, sizeof *pfd);
    unsigned char pkt[512], rbuf[1500];
    double start = now(), end = start + duration, last_sweep = start;
    int qi = 0;
    while (1) {
        double t = now();
        int sending = t < end && sent < max;
        int any_inflight = 0;
        for (int s = 0; s < nsock; s++) any_inflight += inflight[s];
        if (!sending && (any_inflight == 0 || t > end + qtimeout)) break;
        for (int s = 0; sending && s < nsock; s++) {
            while (inflight[s] < window && sent < max) {
                /* find a free id on this socket's stripe */
                unsigned short id = next_id;
                int tries = 0;
                while ((id % nsock != s || id == 0 || sent_at[id] != 0) && tries < 65536) { id++; tries++; }
                if (tries >= 65536) break;
                next_id = (unsigned short)(id + 1);
                struct qname *q = &names[qi++ % nnames];
                memset(pkt, 0, 12);
                pkt[0] = (unsigned char)(id >> 8); pkt[1] = (unsigned char)id;
                pkt[2] = 0x01; /* RD */
                pkt[5] = 1;    /* QDCOUNT */
                memcpy(pkt + 12, q->wire, (size_t)q->len);
                int off = 12 + q->len;
                pkt[off++] = 0; pkt[off++] = 1; /* A */
                pkt[off++] = 0; pkt[off++] = 1; /* IN */
                if (send(fds[s], pkt, (size_t)off, 0) != off) break;
                sent_at[id] = now();
                expect_nx[id] = q->expect_nx;
                inflight[s]++;
                sent++;
            }
        }
        for (int s = 0; s < nsock; s++) pfd[s] = (struct pollfd){fds[s], POLLIN, 0};
        poll(pfd, (nfds_t)nsock, 10);
        for (int s = 0; s < nsock; s++) {
            if (!(pfd[s].revents & POLLIN)) continue;
            for (int burst = 0; burst < 256; burst++) {
                ssize_t n = recv(fds[s], rbuf, sizeof rbuf, 0);
                if (n < 12) break;
                unsigned short id = (unsigned short)((rbuf[0] << 8) | rbuf[1]);
                if (sent_at[id] == 0) continue; /* late answer to a query already counted lost */
                double l = now() - sent_at[id];
                sent_at[id] = 0;
                inflight[s]--;
                answered++;
                int rcode = rbuf[3] & 0x0f;
                int ancount = (rbuf[6] << 8) | rbuf[7];
                int good = expect_nx[id] ? rcode == 3 : (rcode == 0 && ancount >= 1);
                if (!good) wrong++;
                if (nlat < lat_cap) lat[nlat++] = l;
            }
        }
        t = now();
        if (t - last_sweep > 0.05) {
            last_sweep = t;
            for (int id = 1; id < 65536; id++)
                if (sent_at[id] != 0 && t - sent_at[id] > qtimeout) {
                    sent_at[id] = 0;
                    inflight[id % nsock]--;
                    lost++;
                }
        }
    }
    double secs = now() - start;
    qsort(lat, nlat, sizeof(double), cmp_double);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] : 0;
    printf("{\"sent\": %lld, \"answered\": %lld, \"lost\": %lld, \"wrong\": %lld, \"seconds\": %.6f, "
           "\"qps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
           sent, answered, lost, wrong, secs, (double)answered / secs, p50 * 1e6, p99 * 1e6);
    return 0;
}

extern char **environ;

/* Writes s as a JSON string body (quotes and backslashes escaped, controls as spaces). */
static void json_string(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) putchar(' ');
        else putchar(c);
    }
}

static int run_exec(int argc, char **argv) {
    int first = 0;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) { first = i + 1; break; }
    if (first == 0 || first >= argc) die("usage: loadgen exec --timeout S -- PROGRAM ARG...");
    double timeout = atof(arg(first - 1, argv, "--timeout", "30"));
    int err = memfd_create("loadgen-stderr", MFD_CLOEXEC);
    if (err < 0) die("memfd_create failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, err, 2);
    /* SIGCHLD blocked here so that sigtimedwait can wait for it; the child gets the
       parent's original mask back. */
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &old);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    double start = now();
    int failed = posix_spawnp(&pid, argv[first], &actions, &attr, argv + first, environ);
    if (failed != 0) {
        fprintf(stderr, "loadgen: cannot run %s: %s\n", argv[first], strerror(failed));
        exit(2);
    }
    int status = 0, timed_out = 0;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        double left = start + timeout - now();
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            timed_out = 1;
            break;
        }
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        sigtimedwait(&chld, NULL, &ts);
    }
    double ms = (now() - start) * 1000;
    char tail[400];
    off_t size = lseek(err, 0, SEEK_END);
    off_t from = size > (off_t)sizeof tail ? size - (off_t)sizeof tail : 0;
    ssize_t n = pread(err, tail, sizeof tail, from);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("{\"ms\": %.4f, \"status\": %d, \"timed_out\": %s, \"stderr\": \"", ms, code, timed_out ? "true" : "false");
    json_string(tail, n > 0 ? (size_t)n : 0);
    printf("\"}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: loadgen tunnel|hold|relay|dns|exec [options]");
    /* Before the descriptor limit below: the timed command gets the limit it would get
       from anything else. */
    if (strcmp(argv[1], "exec") == 0) return run_exec(argc, argv);
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    if (strcmp(argv[1], "tunnel") == 0) return run_tunnel(argc, argv);
    if (strcmp(argv[1], "hold") == 0) return run_hold(argc, argv);
    if (strcmp(argv[1], "dns") == 0) return run_dns(argc, argv);
    if (strcmp(argv[1], "relay") == 0) return run_relay(argc, argv);
    die("unknown mode");
    return 2;
}
