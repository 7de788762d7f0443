/*
 * fuzz_disc.c -- the discovery datagram (server/srv_disc_msg.c): arbitrary
 * bytes as a received datagram.
 *
 * Input: byte 0 picks the key (bit 0: the receiver has the key "tok"; bit
 * 1: the receiver's own id is the datagram's), the rest is the datagram.
 * Properties:
 *   - the parser reads nothing past the bytes it is given (ASan) and
 *     answers OK or one of the reasons;
 *   - OK: the node id passes the encoder's checks and the URL
 *     srv_disc_url_check; encoding the parsed fields again (with the key
 *     when the datagram was verified) gives back exactly the same bytes, so
 *     no two datagrams mean the same thing and nothing is ignored;
 *   - a key set and the datagram not signed is never OK;
 *   - the judge answers SELF only for the receiver's own id and URL, and
 *     OWN_ID for its id from another URL.
 */
#include "fuzz.h"

#include "srv_disc_msg.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *key = (data[0] & 1) ? "tok" : NULL;
  const unsigned char *b = data + 1;
  size_t n = size - 1;
  srv_disc_msg m;
  char why[200];
  srv_disc_reason r = srv_disc_parse(b, n, key, &m, why, sizeof why);
  FUZZ_CHECK(r >= SRV_DISC_OK && r < SRV_DISC_NREASONS);
  if (r != SRV_DISC_OK) return 0;
  FUZZ_CHECK(!key || m.verified);
  FUZZ_CHECK(srv_disc_url_check(m.url, NULL, 0));
  if (!m.is_signed || m.verified) {
    unsigned char again[SRV_DISC_MAX];
    size_t k =
        srv_disc_encode(m.node_id, m.url, m.sent_ms, m.verified ? key : NULL, again, sizeof again);
    FUZZ_CHECK(k == n && memcmp(again, b, n) == 0);
  }
  const char *self = (data[0] & 2) ? m.node_id : "fuzz-self";
  srv_disc_reason jr;
  srv_disc_verdict v = srv_disc_judge(&m, self, "http://127.0.0.1:1", true, m.sent_ms, 1, &jr);
  FUZZ_CHECK(v != SRV_DISC_SELF ||
             (!strcmp(m.node_id, self) && !strcmp(m.url, "http://127.0.0.1:1")));
  if (data[0] & 2) FUZZ_CHECK(v == SRV_DISC_SELF || jr == SRV_DISC_OWN_ID);
  return 0;
}
