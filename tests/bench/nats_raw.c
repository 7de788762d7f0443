/*
 * nats_raw.c -- the raw nats.c rates tests/bench/nats.sh prints beside the
 * node's own: what this machine's nats-server and nats.c do without
 * softadastra, in the same run.
 *
 *   nats_raw URL N REPLICAS
 *
 * Makes a stream RAWBENCH<pid> (subjects raw<pid>.>, file storage, REPLICAS,
 * one message per subject like the node's), publishes N 150-byte messages
 * asynchronously with a Nats-Msg-Id each, at most 256 unacknowledged (the
 * node's window), on N distinct subjects, and waits for every ack; then a
 * durable pull consumer fetches them all in batches of 500 and acks each
 * batch (AckAll, as the node does).  Deletes the stream.  Then the same
 * end to end, as the node's hub rates are: a second stream and its durable
 * consumer made first, a consumer thread on a connection of its own
 * fetching and acking while the main thread publishes N messages; timed
 * from the first publish until the consumer holds them all.  Prints:
 *   RAW replicas=R msgs=N pub_per_s=.. fetch_per_s=.. pipe_per_s=..
 *
 * What it is not: a check (asserts nothing about times).  Bounded: every
 * wait has a timeout.  Threads: main, the pipeline's consumer, and
 * nats.c's own.
 */
#define _GNU_SOURCE
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(const char *what, natsStatus s) {
  fprintf(stderr, "nats_raw: %s: %s\n", what, natsStatus_GetText(s));
  return 1;
}

/* The pipeline's consumer: fetches and acks until it holds want messages
 * (or 120 s pass); got and the time of the last message out. */
typedef struct pipe_sub {
  natsSubscription *sub;
  int want, got;
  double t_end;
} pipe_sub;

static void *pipe_consume(void *arg) {
  pipe_sub *p = arg;
  double t0 = now_s();
  while (p->got < p->want && now_s() - t0 < 120) {
    natsMsgList list = {0};
    jsErrCode je = 0;
    natsStatus s = natsSubscription_Fetch(&list, p->sub, 500, 1000, &je);
    if (s == NATS_OK && list.Count) {
      p->got += list.Count;
      natsMsg_Ack(list.Msgs[list.Count - 1], NULL);
    }
    natsMsgList_Destroy(&list);
  }
  p->t_end = now_s();
  return NULL;
}

/* Publishes n messages on js (stream subjects prefix.k<i>), at most 256
 * unacknowledged, and waits for every ack.  NATS_OK or the failure. */
static natsStatus publish_all(jsCtx *js, const char *prefix, int n) {
  char body[150], subj[96], id[96];
  memset(body, 'v', sizeof body);
  for (int i = 0; i < n; i++) {
    natsMsg *m = NULL;
    snprintf(subj, sizeof subj, "%s.k%d", prefix, i);
    natsStatus s = natsMsg_Create(&m, subj, NULL, body, (int)sizeof body);
    if (s != NATS_OK) return s;
    snprintf(id, sizeof id, "%s:%d", prefix, i);
    natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    s = js_PublishMsgAsync(js, &m, NULL);
    natsMsg_Destroy(m);
    if (s != NATS_OK) return s;
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  return js_PublishAsyncComplete(js, &po);
}

/* Makes the stream `name` on subjects filter: file storage, replicas, one
 * message per subject (like the node's). */
static natsStatus add_stream(jsCtx *js, const char *name, const char *filter, int replicas) {
  const char *subjects[1] = {filter};
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = name;
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  sc.Replicas = replicas;
  sc.MaxMsgsPerSubject = 1;
  jsErrCode je = 0;
  return js_AddStream(NULL, js, &sc, NULL, &je);
}

/* The end-to-end rate: msgs/s from the first publish until a consumer on
 * another connection holds all n; 0 on failure. */
static double pipeline(const char *url, jsCtx *js, int n, int replicas) {
  char stream[64], filter[80], prefix[64];
  snprintf(stream, sizeof stream, "RAWPIPE%d", (int)getpid());
  snprintf(prefix, sizeof prefix, "pipe%d", (int)getpid());
  snprintf(filter, sizeof filter, "%s.>", prefix);
  if (add_stream(js, stream, filter, replicas) != NATS_OK) return 0;
  jsErrCode je = 0;
  double rate = 0;
  natsConnection *nc2 = NULL;
  jsCtx *js2 = NULL;
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = "rawpipe";
  cc.AckPolicy = js_AckAll;
  cc.MaxAckPending = 20000;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream;
  so.Consumer = "rawpipe";
  pipe_sub ps = {.want = n};
  pthread_t th;
  if (natsConnection_ConnectTo(&nc2, url) == NATS_OK &&
      natsConnection_JetStream(&js2, nc2, NULL) == NATS_OK &&
      js_AddConsumer(NULL, js2, stream, &cc, NULL, &je) == NATS_OK &&
      js_PullSubscribe(&ps.sub, js2, filter, "rawpipe", NULL, &so, &je) == NATS_OK &&
      pthread_create(&th, NULL, pipe_consume, &ps) == 0) {
    double t0 = now_s();
    natsStatus s = publish_all(js, prefix, n);
    pthread_join(th, NULL);
    if (s == NATS_OK && ps.got >= n) rate = n / (ps.t_end - t0);
  }
  natsSubscription_Destroy(ps.sub);
  js_DeleteStream(js, stream, NULL, NULL);
  jsCtx_Destroy(js2);
  natsConnection_Destroy(nc2);
  return rate;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: nats_raw URL N REPLICAS\n");
    return 2;
  }
  const char *url = argv[1];
  int n = atoi(argv[2]), replicas = atoi(argv[3]);
  if (n <= 0 || replicas <= 0) return 2;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  natsStatus s = natsConnection_ConnectTo(&nc, url);
  if (s != NATS_OK) return die("connect", s);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 256;
  jo.Wait = 10000;
  s = natsConnection_JetStream(&js, nc, &jo);
  if (s != NATS_OK) return die("jetstream", s);
  char stream[64], subj[64], filter[64];
  snprintf(stream, sizeof stream, "RAWBENCH%d", (int)getpid());
  snprintf(filter, sizeof filter, "raw%d.>", (int)getpid());
  s = add_stream(js, stream, filter, replicas);
  if (s != NATS_OK) return die("add stream", s);
  jsErrCode je = 0;
  snprintf(subj, sizeof subj, "raw%d", (int)getpid());
  double t0 = now_s();
  s = publish_all(js, subj, n);
  if (s != NATS_OK) return die("publish", s);
  double pub = n / (now_s() - t0);

  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = "rawbench";
  cc.AckPolicy = js_AckAll;
  cc.MaxAckPending = 20000;
  s = js_AddConsumer(NULL, js, stream, &cc, NULL, &je);
  if (s != NATS_OK) return die("add consumer", s);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream;
  so.Consumer = "rawbench";
  natsSubscription *sub = NULL;
  s = js_PullSubscribe(&sub, js, filter, "rawbench", NULL, &so, &je);
  if (s != NATS_OK) return die("pull subscribe", s);
  int got = 0;
  t0 = now_s();
  while (got < n && now_s() - t0 < 120) {
    natsMsgList list = {0};
    s = natsSubscription_Fetch(&list, sub, 500, 5000, &je);
    if (s == NATS_OK && list.Count) {
      got += list.Count;
      natsMsg_Ack(list.Msgs[list.Count - 1], NULL);
    }
    natsMsgList_Destroy(&list);
  }
  double fetch = got / (now_s() - t0);
  natsSubscription_Destroy(sub);
  js_DeleteStream(js, stream, NULL, NULL);
  double pipe = pipeline(url, js, n, replicas);
  printf("RAW replicas=%d msgs=%d pub_per_s=%.0f fetch_per_s=%.0f fetched=%d pipe_per_s=%.0f\n",
         replicas, n, pub, fetch, got, pipe);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return got == n ? 0 : 1;
}
