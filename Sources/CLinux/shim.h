#ifndef RUNFEED_CLINUX_SHIM_H
#define RUNFEED_CLINUX_SHIM_H
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <signal.h>
#include <stdint.h>

/* struct epoll_event is packed on x86_64; keep it on the C side. */
static inline int runfeed_epoll_ctl(int epfd, int op, int fd, uint32_t events) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev);
}

/* Waits like epoll_wait and unpacks the ready list into two plain arrays. */
static inline int runfeed_epoll_wait(int epfd, int *fds, uint32_t *events, int max, int timeout) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout);
    for (int i = 0; i < n; i++) { fds[i] = evs[i].data.fd; events[i] = evs[i].events; }
    return n;
}

static const uint32_t RUNFEED_EPOLLIN = EPOLLIN;
static const uint32_t RUNFEED_EPOLLOUT = EPOLLOUT;
static const uint32_t RUNFEED_EPOLLRDHUP = EPOLLRDHUP;
static const uint32_t RUNFEED_EPOLLHUP = EPOLLHUP;
static const uint32_t RUNFEED_EPOLLERR = EPOLLERR;
/* One waiter per event on a listening socket shared by several processes (no thundering herd). */
static const uint32_t RUNFEED_EPOLLEXCLUSIVE = EPOLLEXCLUSIVE;
#include <sys/socket.h>
/* accept4 (a GNU extension: declared here rather than defining _GNU_SOURCE for every header). */
extern int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
static inline int runfeed_accept_nonblocking(int fd) { return accept4(fd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC); }
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <spawn.h>
#include <poll.h>

/* The calling process gets `sig` when its parent exits (workers of a pool die with the supervisor). */
static inline int runfeed_die_with_parent(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0); }

/* True when fd is a listening socket (an inherited FastCGI socket: spawn-fcgi's fd 0, systemd's fd 3). */
static inline int runfeed_is_listening_socket(int fd) {
    int v = 0; socklen_t len = sizeof(v);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v != 0;
}

/* WIFEXITED & co. are macros. */
static inline int runfeed_wifexited(int status) { return WIFEXITED(status); }
static inline int runfeed_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline int runfeed_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int runfeed_wtermsig(int status) { return WTERMSIG(status); }

/* glibc declares this only under _GNU_SOURCE, which would change other system headers' structs. */
extern int pthread_setname_np(pthread_t thread, const char *name);

/* Names the calling thread (shows in /proc/<pid>/task/<tid>/comm). */
static inline void runfeed_name_this_thread(const char *name) { pthread_setname_np(pthread_self(), name); }
#endif
