/*
 * sock.h: the connections libmilter accepts (milter/sock.c).
 */
#ifndef SOCK_H
#define SOCK_H

/* Shuts down every milter connection still open (at stop). */
void sock_shutdown_all(void);

#endif
