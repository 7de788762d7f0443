/*
 * transport.h -- the built-in sync transports and discoveries.
 *
 *   disabled  the default: nothing is sent, work stays queued (normal for a
 *             node without peers; `sync status` says so)
 *   stub      switched on by enable_transport / enable_discovery without a
 *             transport of the caller's: it says it is a stub (kind "stub",
 *             stub=true, a warning in the log) and accepts nothing, so work is
 *             retried with backoff and finally marked failed
 *
 * Real transports plug in through sa_options.transport (softadastra.h).
 * These tables are immutable and shared.
 */
#ifndef SA_TRANSPORT_H
#define SA_TRANSPORT_H

#include "softadastra.h"

extern const sa_transport sa_transport_disabled;
extern const sa_transport sa_transport_stub;
extern const sa_discovery sa_discovery_disabled;
extern const sa_discovery sa_discovery_stub;

#endif
