/*
 * test_srv_disc.c -- the discovery datagram (server/srv_disc_msg.c, issue
 * 22 item 8): SHA-256 and HMAC-SHA256 against published vectors; a valid
 * datagram, signed and unsigned, round trip; every truncation, an
 * oversize one, a wrong magic, version or flag, trailing bytes, bad node
 * ids (and the node id rule against the core's sa_node_id_check), bad and
 * good URLs; signatures (missing, wrong key, a flipped bit); the judge (own
 * id from the same and another URL, a loopback URL from another host, a
 * replayed signed datagram); the advertised URL (never loopback when the
 * node listens elsewhere); and random mutations of a datagram, which are
 * refused or parse to a datagram that encodes back to the same bytes.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h" /* sa_node_id_check: the rule the datagram's id follows */
#include "srv_disc_msg.h"

static void hex(const unsigned char *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", b[i]);
}

static srv_disc_reason parse(const unsigned char *b, size_t n, const char *key, srv_disc_msg *m) {
  char why[200];
  return srv_disc_parse(b, n, key, m, why, sizeof why);
}

/* A datagram built by hand: the fields as given, no checks (for bad ones). */
static size_t raw(unsigned char *out, const char *magic, int version, int flags, uint64_t ts,
                  const char *id, size_t idlen, const char *url, size_t urllen) {
  size_t o = 0;
  memcpy(out, magic, 4);
  o = 4;
  out[o++] = (unsigned char)version;
  out[o++] = (unsigned char)flags;
  for (int i = 0; i < 8; i++)
    out[o++] = (unsigned char)(ts >> (56 - 8 * i));
  out[o++] = (unsigned char)idlen;
  memcpy(out + o, id, idlen);
  o += idlen;
  out[o++] = (unsigned char)urllen;
  memcpy(out + o, url, urllen);
  o += urllen;
  return o;
}

START_TEST(test_sha256_vectors) {
  unsigned char d[32];
  char h[65];
  srv_sha256("", 0, d);
  hex(d, 32, h);
  ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  srv_sha256("abc", 3, d);
  hex(d, 32, h);
  ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  srv_sha256(m, strlen(m), d);
  hex(d, 32, h);
  ck_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  /* RFC 4231 test cases 1, 2 and 6 (a key longer than a block) */
  unsigned char k1[20], k6[131];
  memset(k1, 0x0b, sizeof k1);
  memset(k6, 0xaa, sizeof k6);
  srv_hmac_sha256(k1, sizeof k1, "Hi There", 8, d);
  hex(d, 32, h);
  ck_assert_str_eq(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  const char *d2 = "what do ya want for nothing?";
  srv_hmac_sha256("Jefe", 4, d2, strlen(d2), d);
  hex(d, 32, h);
  ck_assert_str_eq(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  srv_hmac_sha256(k6, sizeof k6, d6, strlen(d6), d);
  hex(d, 32, h);
  ck_assert_str_eq(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}
END_TEST

START_TEST(test_valid_round_trip) {
  unsigned char b[SRV_DISC_MAX];
  srv_disc_msg m;
  size_t n =
      srv_disc_encode("node-a", "http://127.0.0.1:8081", 1234567890123ull, NULL, b, sizeof b);
  ck_assert_uint_eq(n, 16 + 6 + 21);
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_OK);
  ck_assert_str_eq(m.node_id, "node-a");
  ck_assert_str_eq(m.url, "http://127.0.0.1:8081");
  ck_assert_uint_eq(m.sent_ms, 1234567890123ull);
  ck_assert(!m.is_signed && !m.verified);
  /* signed: heard under the key, and by a node without a key (unchecked) */
  n = srv_disc_encode("node-a", "http://10.0.0.5:8081", 7, "s3cret", b, sizeof b);
  ck_assert_uint_eq(n, 16 + 6 + 20 + SRV_DISC_MAC_LEN);
  ck_assert_int_eq(parse(b, n, "s3cret", &m), SRV_DISC_OK);
  ck_assert(m.is_signed && m.verified);
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_OK);
  ck_assert(m.is_signed && !m.verified);
  /* the largest datagram */
  char id[SA_NODE_ID_MAX + 1], url[SRV_DISC_URL_MAX + 1];
  memset(id, 'x', SA_NODE_ID_MAX);
  id[SA_NODE_ID_MAX] = '\0';
  snprintf(url, sizeof url, "http://h:1/");
  memset(url + 11, 'p', SRV_DISC_URL_MAX - 11);
  url[SRV_DISC_URL_MAX] = '\0';
  n = srv_disc_encode(id, url, 1, "k", b, sizeof b);
  ck_assert_uint_eq(n, SRV_DISC_MAX);
  ck_assert_int_eq(parse(b, n, "k", &m), SRV_DISC_OK);
  ck_assert_str_eq(m.url, url);
  /* the encoder refuses what the parser would */
  ck_assert_uint_eq(srv_disc_encode("a b", "http://h:1", 1, NULL, b, sizeof b), 0);
  ck_assert_uint_eq(srv_disc_encode("a", "ftp://h", 1, NULL, b, sizeof b), 0);
  ck_assert_uint_eq(srv_disc_encode("a", "http://h:1", 1, NULL, b, 20), 0);
}
END_TEST

START_TEST(test_truncated_oversize_trailing) {
  unsigned char b[SRV_DISC_MAX + 64];
  srv_disc_msg m;
  for (int sign = 0; sign < 2; sign++) {
    const char *key = sign ? "k" : NULL;
    size_t n = srv_disc_encode("node-b", "http://127.0.0.1:9", 5, key, b, sizeof b);
    ck_assert_uint_gt(n, 0);
    for (size_t l = 0; l < n; l++) /* every prefix */
      ck_assert_int_ne(parse(b, l, key, &m), SRV_DISC_OK);
    b[n] = 0;
    ck_assert_int_eq(parse(b, n + 1, key, &m), SRV_DISC_FORMAT); /* a trailing byte */
    ck_assert_int_eq(parse(b, n, key, &m), SRV_DISC_OK);
  }
  static unsigned char big[70000];
  size_t n = srv_disc_encode("node-b", "http://127.0.0.1:9", 5, NULL, big, sizeof big);
  ck_assert_int_eq(parse(big, SRV_DISC_MAX + 1, NULL, &m), SRV_DISC_SIZE);
  ck_assert_int_eq(parse(big, sizeof big, NULL, &m), SRV_DISC_SIZE);
  ck_assert_int_eq(parse(big, 3, NULL, &m), SRV_DISC_SIZE);
  ck_assert_int_eq(parse(big, n, NULL, &m), SRV_DISC_OK);
}
END_TEST

START_TEST(test_bad_header) {
  unsigned char b[SRV_DISC_MAX];
  srv_disc_msg m;
  const char *u = "http://127.0.0.1:9";
  size_t n = raw(b, "SADX", 1, 0, 1, "a", 1, u, strlen(u));
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
  n = raw(b, "SADG", 2, 0, 1, "a", 1, u, strlen(u));
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
  n = raw(b, "SADG", 1, 2, 1, "a", 1, u, strlen(u));
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
  /* the signed flag without the MAC's 32 bytes: the lengths do not add up */
  n = raw(b, "SADG", 1, SRV_DISC_FLAG_SIGNED, 1, "a", 1, u, strlen(u));
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
  n = raw(b, "SADG", 1, 0, 1, "a", 1, u, strlen(u));
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_OK);
  b[15 + 1] = (unsigned char)(strlen(u) + 1); /* a URL length past the end */
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
  b[15 + 1] = 0; /* an empty URL */
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
}
END_TEST

START_TEST(test_bad_id) {
  unsigned char b[SRV_DISC_MAX + 64];
  srv_disc_msg m;
  const char *u = "http://127.0.0.1:9";
  const char *bad[] = {"a b", "a/b", "node\xc3\xa9", "a\nb", "a:b", "é"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    size_t n = raw(b, "SADG", 1, 0, 1, bad[i], strlen(bad[i]), u, strlen(u));
    ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_BAD_ID);
  }
  size_t n = raw(b, "SADG", 1, 0, 1, "a\0b", 3, u, strlen(u)); /* a NUL inside */
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_BAD_ID);
  n = raw(b, "SADG", 1, 0, 1, "", 0, u, strlen(u)); /* empty */
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
  char id65[66];
  memset(id65, 'a', 65);
  n = raw(b, "SADG", 1, 0, 1, id65, 65, u, strlen(u)); /* longer than SA_NODE_ID_MAX */
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_FORMAT);
  /* The datagram's id rule is the core's: compare on random strings. */
  unsigned seed = 22;
  const char alphabet[] = "aZ09._- /:\x01\x7f\xc3";
  for (int i = 0; i < 20000; i++) {
    char id[80];
    size_t l = (size_t)(rand_r(&seed) % 70);
    for (size_t k = 0; k < l; k++)
      id[k] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
    id[l] = '\0';
    bool core_ok = sa_node_id_check(id, NULL) == 0;
    bool ours = srv_disc_encode(id, u, 1, NULL, b, sizeof b) != 0;
    ck_assert_msg(core_ok == ours, "id \"%s\": core %d, datagram %d", id, core_ok, ours);
    if (l >= 1 && l <= SA_NODE_ID_MAX) {
      n = raw(b, "SADG", 1, 0, 1, id, l, u, strlen(u));
      ck_assert_int_eq(parse(b, n, NULL, &m) == SRV_DISC_OK, core_ok);
    }
  }
}
END_TEST

START_TEST(test_urls) {
  const char *good[] = {"http://127.0.0.1:8080", "https://node-a.example:443/sa",
                        "http://[::1]:8080",     "http://host",
                        "http://10.0.0.5:1",     "http://HOST-1.Lan:65535/a/b_c~d.e/",
                        "http://[fe80::1]/x",    "http://a.b.c.d.e.f"};
  const char *bad[] = {"",
                       "ftp://x:1",
                       "http://",
                       "http:///x",
                       "http://a b:1",
                       "http://user@h:1",
                       "http://h:0",
                       "http://h:65536",
                       "http://h:1234567",
                       "http://h:",
                       "http://h:1?x=1",
                       "http://h:1#f",
                       "http://h:1/p%20q",
                       "http://h:1/p q",
                       "http://127.1:80",
                       "http://0x7f.1:80",
                       "http://2130706433:80",
                       "http://1.2.3.4.5:80",
                       "http://a..b:1",
                       "http://a.:1",
                       "http://.a:1",
                       "http://[zz]:1",
                       "http://[::1:1",
                       "http://h\xc3\xa9:1",
                       "http://h:1/\xc3\xa9",
                       "HTTP://h:1",
                       "http://h:1\"",
                       "http://h:1\\x",
                       "javascript:alert(1)"};
  char why[200];
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    ck_assert_msg(srv_disc_url_check(good[i], why, sizeof why), "%s: %s", good[i], why);
  unsigned char b[SRV_DISC_MAX + 300];
  srv_disc_msg m;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    why[0] = '\0';
    ck_assert_msg(!srv_disc_url_check(bad[i], why, sizeof why), "%s accepted", bad[i]);
    ck_assert_msg(why[0], "%s: no reason", bad[i]);
    if (!bad[i][0]) continue;
    size_t n = raw(b, "SADG", 1, 0, 1, "a", 1, bad[i], strlen(bad[i]));
    ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_BAD_URL);
  }
  char longu[SRV_DISC_URL_MAX + 2];
  snprintf(longu, sizeof longu, "http://h:1/");
  memset(longu + 11, 'p', sizeof longu - 12);
  longu[sizeof longu - 1] = '\0'; /* 201 bytes */
  ck_assert(!srv_disc_url_check(longu, why, sizeof why));
  size_t n = raw(b, "SADG", 1, 0, 1, "a", 1, "http://h:1\0x", 12); /* a NUL inside */
  ck_assert_int_eq(parse(b, n, NULL, &m), SRV_DISC_BAD_URL);
  /* loopback by their text */
  ck_assert(srv_disc_url_loopback("http://127.0.0.1:1"));
  ck_assert(srv_disc_url_loopback("http://127.3.2.1:1/x"));
  ck_assert(srv_disc_url_loopback("http://[::1]:1"));
  ck_assert(srv_disc_url_loopback("http://localhost:1"));
  ck_assert(srv_disc_url_loopback("http://LocalHost"));
  ck_assert(srv_disc_url_loopback("http://a.localhost:1"));
  ck_assert(!srv_disc_url_loopback("http://10.0.0.1:1"));
  ck_assert(!srv_disc_url_loopback("http://localhost.example:1"));
  ck_assert(!srv_disc_url_loopback("http://[fe80::1]:1"));
}
END_TEST

START_TEST(test_signatures) {
  unsigned char b[SRV_DISC_MAX];
  srv_disc_msg m;
  const char *u = "http://10.0.0.5:8081";
  size_t n = srv_disc_encode("node-a", u, 9, NULL, b, sizeof b);
  ck_assert_int_eq(parse(b, n, "tok", &m), SRV_DISC_UNSIGNED);
  n = srv_disc_encode("node-a", u, 9, "other", b, sizeof b);
  ck_assert_int_eq(parse(b, n, "tok", &m), SRV_DISC_BAD_MAC);
  n = srv_disc_encode("node-a", u, 9, "tok", b, sizeof b);
  ck_assert_int_eq(parse(b, n, "tok", &m), SRV_DISC_OK);
  for (size_t i = 0; i < n; i++) { /* any bit of a signed datagram flipped */
    for (int bit = 0; bit < 8; bit++) {
      b[i] ^= (unsigned char)(1u << bit);
      ck_assert_int_ne(parse(b, n, "tok", &m), SRV_DISC_OK);
      b[i] ^= (unsigned char)(1u << bit);
    }
  }
  /* a changed port is still a valid URL: only the MAC catches it */
  b[16 + 6 + strlen(u) - 1] = '2';
  ck_assert_int_eq(parse(b, n, "tok", &m), SRV_DISC_BAD_MAC);
}
END_TEST

START_TEST(test_judge) {
  srv_disc_msg m;
  memset(&m, 0, sizeof m);
  srv_disc_reason r;
  snprintf(m.node_id, sizeof m.node_id, "node-a");
  snprintf(m.url, sizeof m.url, "http://127.0.0.1:8081");
  ck_assert_int_eq(srv_disc_judge(&m, "node-a", "http://127.0.0.1:8081", true, 0, 1, &r),
                   SRV_DISC_SELF);
  ck_assert_int_eq(srv_disc_judge(&m, "node-a", "http://127.0.0.1:8082", true, 0, 1, &r),
                   SRV_DISC_REFUSED);
  ck_assert_int_eq(r, SRV_DISC_OWN_ID);
  ck_assert_int_eq(srv_disc_judge(&m, "node-b", "http://127.0.0.1:8082", true, 0, 1, &r),
                   SRV_DISC_PEER);
  ck_assert_int_eq(srv_disc_judge(&m, "node-b", "http://10.0.0.2:8082", false, 0, 1, &r),
                   SRV_DISC_REFUSED);
  ck_assert_int_eq(r, SRV_DISC_LOOPBACK);
  snprintf(m.url, sizeof m.url, "http://10.0.0.1:8081");
  ck_assert_int_eq(srv_disc_judge(&m, "node-b", "http://10.0.0.2:8082", false, 0, 1, &r),
                   SRV_DISC_PEER);
  /* the replay window applies to a verified datagram only */
  m.sent_ms = 1000000;
  m.is_signed = true;
  ck_assert_int_eq(srv_disc_judge(&m, "node-b", "x", false, 1000000 + 60001, 60000, &r),
                   SRV_DISC_PEER);
  m.verified = true;
  ck_assert_int_eq(srv_disc_judge(&m, "node-b", "x", false, 1000000 + 60001, 60000, &r),
                   SRV_DISC_REFUSED);
  ck_assert_int_eq(r, SRV_DISC_STALE);
  ck_assert_int_eq(srv_disc_judge(&m, "node-b", "x", false, 1000000 - 60001, 60000, &r),
                   SRV_DISC_REFUSED);
  ck_assert_int_eq(srv_disc_judge(&m, "node-b", "x", false, 1000000 + 60000, 60000, &r),
                   SRV_DISC_PEER);
  for (int i = 1; i < SRV_DISC_NREASONS; i++)
    ck_assert_str_ne(srv_disc_reason_name((srv_disc_reason)i), "unknown");
}
END_TEST

START_TEST(test_advertise_url) {
  char out[256], why[600];
  const char *how;
  ck_assert_int_eq(
      srv_disc_advertise_url("127.0.0.1", 8081, "", out, sizeof out, &how, why, sizeof why), 0);
  ck_assert_str_eq(out, "http://127.0.0.1:8081");
  ck_assert_int_eq(
      srv_disc_advertise_url("::1", 8081, NULL, out, sizeof out, &how, why, sizeof why), 0);
  ck_assert_str_eq(out, "http://[::1]:8081");
  ck_assert_int_eq(
      srv_disc_advertise_url("10.0.0.5", 8081, "", out, sizeof out, &how, why, sizeof why), 0);
  ck_assert_str_eq(out, "http://10.0.0.5:8081");
  ck_assert_int_eq(srv_disc_advertise_url("0.0.0.0", 8081, "http://node-a.lan:8081", out,
                                          sizeof out, &how, why, sizeof why),
                   0);
  ck_assert_str_eq(out, "http://node-a.lan:8081");
  ck_assert_str_eq(how, "discovery_url");
  /* never loopback when the node listens elsewhere */
  ck_assert_int_eq(srv_disc_advertise_url("10.0.0.5", 8081, "http://127.0.0.1:8081", out,
                                          sizeof out, &how, why, sizeof why),
                   -1);
  ck_assert_ptr_nonnull(strstr(why, "--advertise-url"));
  ck_assert_int_eq(srv_disc_advertise_url("0.0.0.0", 8081, "http://localhost:8081", out, sizeof out,
                                          &how, why, sizeof why),
                   -1);
  ck_assert_int_eq(
      srv_disc_advertise_url("0.0.0.0", 8081, "ftp://x", out, sizeof out, &how, why, sizeof why),
      -1);
  /* 0.0.0.0: an interface's address, or an error naming the option */
  int rc = srv_disc_advertise_url("0.0.0.0", 8081, "", out, sizeof out, &how, why, sizeof why);
  if (rc == 0) {
    ck_assert(srv_disc_url_check(out, why, sizeof why));
    ck_assert_msg(!srv_disc_url_loopback(out), "0.0.0.0 advertised %s", out);
    ck_assert_ptr_null(strstr(out, "0.0.0.0"));
    printf("0.0.0.0 advertises %s (%s)\n", out, how);
  } else {
    ck_assert_ptr_nonnull(strstr(why, "--advertise-url"));
    printf("0.0.0.0: %s\n", why);
  }
  ck_assert_int_eq(srv_disc_advertise_url("::", 8081, "", out, sizeof out, &how, why, sizeof why),
                   -1);
  ck_assert_ptr_nonnull(strstr(why, "--advertise-url"));
  struct in_addr d[16];
  size_t n = srv_disc_destinations(true, d, 16);
  ck_assert_uint_eq(n, 1);
  ck_assert_uint_eq(ntohl(d[0].s_addr), 0x7fffffffu);
  n = srv_disc_destinations(false, d, 16);
  ck_assert_uint_ge(n, 1);
  for (size_t i = 1; i < n; i++)
    ck_assert_uint_ne(ntohl(d[i].s_addr) >> 24, 127);
}
END_TEST

/* Random mutations of valid datagrams: never a crash, never a read past the
 * length (ASan), and whatever parses encodes back to the same bytes. */
START_TEST(test_mutations) {
  unsigned seed = 8;
  unsigned char b[SRV_DISC_MAX + 8], again[SRV_DISC_MAX + 8];
  for (int i = 0; i < 200000; i++) {
    const char *key = (i & 1) ? "tok" : NULL;
    size_t n = srv_disc_encode(i & 2 ? "node-a" : "n", i & 4 ? "http://[::1]:1/x" : "http://h:80",
                               (uint64_t)i, key, b, sizeof b);
    int flips = 1 + rand_r(&seed) % 3;
    for (int f = 0; f < flips; f++)
      b[rand_r(&seed) % n] = (unsigned char)rand_r(&seed);
    if (rand_r(&seed) % 4 == 0) n = (size_t)rand_r(&seed) % (n + 8);
    srv_disc_msg m;
    if (parse(b, n, key, &m) != SRV_DISC_OK || (m.is_signed && !m.verified)) continue;
    size_t k = srv_disc_encode(m.node_id, m.url, m.sent_ms, key, again, sizeof again);
    ck_assert_uint_eq(k, n);
    ck_assert(memcmp(again, b, n) == 0);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("srv_disc");
  TCase *tc = tcase_create("datagram");
  tcase_add_test(tc, test_sha256_vectors);
  tcase_add_test(tc, test_valid_round_trip);
  tcase_add_test(tc, test_truncated_oversize_trailing);
  tcase_add_test(tc, test_bad_header);
  tcase_add_test(tc, test_bad_id);
  tcase_add_test(tc, test_urls);
  tcase_add_test(tc, test_signatures);
  tcase_add_test(tc, test_judge);
  tcase_add_test(tc, test_advertise_url);
  tcase_add_test(tc, test_mutations);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
