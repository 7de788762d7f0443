/*
 * transport.c -- the built-in transports and discoveries; see transport.h.
 */
#include "transport.h"

#include <stddef.h>

static int stub_send(void *ctx, const sa_sync_op *ops, size_t n, bool *acked) {
  (void)ctx;
  (void)ops;
  for (size_t i = 0; i < n; i++)
    acked[i] = false; /* a stub reaches no peer */
  return 0;
}

static bool stub_running(void *ctx) {
  (void)ctx;
  return true;
}

static bool disabled_running(void *ctx) {
  (void)ctx;
  return false;
}

static uint32_t no_peers(void *ctx) {
  (void)ctx;
  return 0;
}

const sa_transport sa_transport_disabled = {
    .kind = "disabled", .stub = false, .send = NULL, .running = disabled_running};
const sa_transport sa_transport_stub = {
    .kind = "stub", .stub = true, .send = stub_send, .running = stub_running};
const sa_discovery sa_discovery_disabled = {.kind = "disabled", .stub = false, .peers = no_peers};
const sa_discovery sa_discovery_stub = {.kind = "stub", .stub = true, .peers = no_peers};
