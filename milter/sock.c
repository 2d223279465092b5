/*
 * sock.c: the TCP connections libmilter accepts. libmilter gives no hook
 * for its sockets, so its calls to accept(2) and read(2) are answered
 * here: the executable's definitions come before libc's for every shared
 * library of the process. Unix sockets are left alone (they have neither
 * of the two delays below).
 *
 * TCP_NODELAY: libmilter writes every header change and the final reply
 * as a packet of its own; with Nagle's algorithm on, each small write
 * after the first waits for the MTA's delayed acknowledgement (40 ms on
 * Linux), which then dominates the time from end of message to verdict.
 *
 * TCP_QUICKACK after each read: the same wait the other way. With the
 * no-reply steps negotiated, the MTA sends header after header without
 * waiting for an answer; its Nagle (Postfix does not set TCP_NODELAY on
 * milter connections) holds each one until we acknowledge the one before,
 * and our kernel delays that acknowledgement. Linux clears quick-ack mode
 * by itself, so it is set again after every read of a tracked socket.
 *
 * At stop, connections the MTA keeps open between messages (libmilter
 * never closes them itself) are shut down once no message is in flight,
 * so that their threads end and free what they hold. close(2) is answered
 * here too, to forget a descriptor before it can be reused.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "sock.h"

typedef int (*sock_accept_fn)(int, struct sockaddr *, socklen_t *);
typedef ssize_t (*sock_read_fn)(int, void *, size_t);
typedef int (*sock_close_fn)(int);

/*
 * XXX Descriptors from SOCK_MAX up are not tracked: no quick ACK, and at
 * stop they are not shut down (the stop then waits out its 30 s).
 *
 * What each descriptor below SOCK_MAX is: a connection libmilter accepted
 * (SOCK_CONN), a TCP one (SOCK_TCP as well), or nothing of ours (0).
 */
#define SOCK_MAX 65536
#define SOCK_CONN 1
#define SOCK_TCP 2

static sock_accept_fn sock_real_accept;
static sock_read_fn sock_real_read;
static sock_close_fn sock_real_close;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;
static atomic_uchar sock_mark[SOCK_MAX];

static void
sock_init(void)
{
	sock_real_accept = (sock_accept_fn)dlsym(RTLD_NEXT, "accept");
	sock_real_read = (sock_read_fn)dlsym(RTLD_NEXT, "read");
	sock_real_close = (sock_close_fn)dlsym(RTLD_NEXT, "close");
}

int close(int fd);

int
close(int fd)
{
	pthread_once(&sock_once, sock_init);
	if (sock_real_close == NULL) {
		errno = ENOSYS;
		return -1;
	}
	/* Forgotten before the number can be handed out again. */
	if (fd >= 0 && fd < SOCK_MAX &&
	    atomic_load_explicit(&sock_mark[fd], memory_order_relaxed))
		atomic_store(&sock_mark[fd], 0);
	return sock_real_close(fd);
}

/*
 * Reading only: a verdict libmilter is still writing (the message just
 * ended) goes out, and the session ends at its next read.
 */
void
sock_shutdown_all(void)
{
	for (int fd = 0; fd < SOCK_MAX; fd++)
		if (atomic_load(&sock_mark[fd]) & SOCK_CONN)
			shutdown(fd, SHUT_RD);
}

ssize_t read(int fd, void *buf, size_t len);

ssize_t
read(int fd, void *buf, size_t len)
{
	ssize_t n;
	int one = 1, saved;
	unsigned char mark;

	pthread_once(&sock_once, sock_init);
	if (sock_real_read == NULL) {
		errno = ENOSYS;
		return -1;
	}
	n = sock_real_read(fd, buf, len);
	if (n > 0 && fd >= 0 && fd < SOCK_MAX &&
	    ((mark =
		  atomic_load_explicit(&sock_mark[fd], memory_order_relaxed)) &
	     SOCK_TCP)) {
		/*
		 * Should the call fail, the mark goes, unless the number was
		 * closed and handed to a new connection meanwhile.
		 */
		saved = errno;
		if (setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one,
			       sizeof(one)) < 0)
			atomic_compare_exchange_strong(&sock_mark[fd], &mark,
						       mark & ~SOCK_TCP);
		errno = saved;
	}
	return n;
}

int accept(int fd, struct sockaddr *sa, socklen_t *len);

int
accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int s, one = 1;

	pthread_once(&sock_once, sock_init);
	if (sock_real_accept == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if ((s = sock_real_accept(fd, sa, len)) < 0)
		return s;
	if (getsockname(s, (struct sockaddr *)&ss, &sl) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
		if (s < SOCK_MAX)
			atomic_store(&sock_mark[s], SOCK_CONN);
		return s;
	}
	if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_msg(LOG_WARNING, "milter socket: cannot set TCP_NODELAY");
	if (s < SOCK_MAX)
		atomic_store(&sock_mark[s], SOCK_CONN | SOCK_TCP);
	return s;
}
