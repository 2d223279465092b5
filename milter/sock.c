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

typedef int (*sock_accept_fn)(int, struct sockaddr *, socklen_t *);
typedef ssize_t (*sock_read_fn)(int, void *, size_t);

/* Descriptors below SOCK_MAX that are accepted TCP connections. */
#define SOCK_MAX 65536

static sock_accept_fn sock_real_accept;
static sock_read_fn sock_real_read;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;
static atomic_uchar sock_tcp[SOCK_MAX];

static void
sock_init(void)
{
	sock_real_accept = (sock_accept_fn)dlsym(RTLD_NEXT, "accept");
	sock_real_read = (sock_read_fn)dlsym(RTLD_NEXT, "read");
}

ssize_t read(int fd, void *buf, size_t len);

ssize_t
read(int fd, void *buf, size_t len)
{
	ssize_t n;
	int one = 1, saved;

	pthread_once(&sock_once, sock_init);
	if (sock_real_read == NULL) {
		errno = ENOSYS;
		return -1;
	}
	n = sock_real_read(fd, buf, len);
	if (n > 0 && fd >= 0 && fd < SOCK_MAX &&
	    atomic_load_explicit(&sock_tcp[fd], memory_order_relaxed)) {
		/*
		 * The descriptor may have been closed and reused by something
		 * else than a TCP socket since: then the call fails and the
		 * mark goes.
		 */
		saved = errno;
		if (setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one,
			       sizeof(one)) < 0)
			atomic_store_explicit(&sock_tcp[fd], 0,
					      memory_order_relaxed);
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
			atomic_store(&sock_tcp[s], 0);
		return s;
	}
	if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_msg(LOG_WARNING, "milter socket: cannot set TCP_NODELAY");
	if (s < SOCK_MAX)
		atomic_store(&sock_tcp[s], 1);
	return s;
}
