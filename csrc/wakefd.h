/* wakefd.h - a wake-up file descriptor for a thread that sleeps in a selector: an eventfd on
 * Linux, a non-blocking pipe elsewhere. No Python inside.
 *
 * Any thread may signal; one consumer (the thread whose selector watches read_fd) consumes. A
 * signal is never lost: it leaves the fd readable until consumed, and several signals before a
 * consume collapse into one wake-up (an eventfd counter, or bytes in a pipe; a full pipe already
 * means readable, so EAGAIN is not an error). The protocol that decides WHEN to signal belongs to
 * the user (loop_runner.h: consume first, then look at the work). */
#ifndef THRASKS_WAKEFD_H
#define THRASKS_WAKEFD_H

typedef struct wakefd {
    int read_fd, write_fd;         /* the same fd for an eventfd; -1 when closed */
} wakefd;

void wakefd_init(wakefd *w);        /* closed state: both -1 */
int wakefd_open(wakefd *w);         /* 0, or -1 with errno set */
void wakefd_close(wakefd *w);
void wakefd_signal(wakefd *w);      /* any thread; async-signal-safe */
void wakefd_consume(wakefd *w);     /* the consumer */

#endif
