/*
 * sock.c: TCP_NODELAY on the connections libmilter accepts. libmilter
 * writes every header change and the final reply as a packet of its own;
 * with Nagle's algorithm on, each small write after the first waits for
 * the MTA's delayed acknowledgement (40 ms on Linux), which then dominates
 * the time from end of message to verdict. libmilter gives no hook for
 * its sockets, so its call to accept(2) is answered here: the executable's
 * definition comes before libc's for every shared library of the process.
 * Unix sockets are left alone (they have no Nagle).
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>

#include "log.h"

typedef int (*sock_accept_fn)(int, struct sockaddr *, socklen_t *);

static sock_accept_fn sock_real_accept;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;

static void
sock_init(void)
{
	sock_real_accept = (sock_accept_fn)dlsym(RTLD_NEXT, "accept");
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
	if (getsockname(s, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
	    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_msg(LOG_WARNING, "milter socket: cannot set TCP_NODELAY");
	return s;
}
