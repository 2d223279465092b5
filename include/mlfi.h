/*
 * mlfi.h: the libmilter callbacks.
 */
#ifndef MLFI_H
#define MLFI_H

#include <libmilter/mfapi.h>
#include <stdbool.h>

extern struct smfiDesc mlfi_desc;
/* Messages between MAIL FROM and their end, for a clean stop. */
int mlfi_in_flight(void);
/* From now on, new connections are turned away (the MTA tempfails). */
void mlfi_drain(void);
/* Has the last message in flight ended since the last call (and none
 * begun since)? */
bool mlfi_idle_again(void);
/* Connections whose state is not yet freed, for a clean stop. */
int mlfi_connections(void);

#endif
