/* wakefd.c - the wake-up fd (contract in wakefd.h). Touches: its two file descriptors. */
#define _GNU_SOURCE
#include "wakefd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

void wakefd_init(wakefd *w)
{
    w->read_fd = w->write_fd = -1;
}

int wakefd_open(wakefd *w)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    w->read_fd = w->write_fd = fd;
#else
    int fds[2];
    if (pipe(fds) < 0) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    w->read_fd = fds[0];
    w->write_fd = fds[1];
#endif
    return 0;
}

void wakefd_close(wakefd *w)
{
    if (w->read_fd >= 0) {
        close(w->read_fd);
    }
    if (w->write_fd >= 0 && w->write_fd != w->read_fd) {
        close(w->write_fd);
    }
    w->read_fd = w->write_fd = -1;
}

void wakefd_signal(wakefd *w)
{
#ifdef __linux__
    uint64_t one = 1;
    while (write(w->write_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
#else
    char one = 1;
    while (write(w->write_fd, &one, 1) < 0 && errno == EINTR) {
    }
#endif
}

void wakefd_consume(wakefd *w)
{
    char buf[64];
    while (read(w->read_fd, buf, sizeof buf) > 0) {
#ifdef __linux__
        break; /* one read resets an eventfd */
#endif
    }
}
