/*
 * proxy.c -- the cluster tests' loopback TCP proxy (see proxy.h).
 *
 * One poll thread per proxy owns every socket of it.  Other threads post a
 * command (cut, heal, stop) under the mutex, wake the thread through a pipe
 * and wait on a condition variable until the thread has carried it out, so
 * a command's effect is complete when it returns.
 *
 * Each connection has two bounded buffers (client -> upstream, upstream ->
 * client).  A side is read only while its buffer has room, and written
 * while the other side's buffer has bytes: memory stays bounded whatever
 * the peers do.  An EOF is passed on as shutdown(SHUT_WR) once the bytes
 * before it are written; an error on either side resets both.
 */
#define _GNU_SOURCE
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct pbuf {
  char data[PROXY_BUF_BYTES];
  size_t off, len; /* bytes [off, off + len) are waiting to be written */
} pbuf;

typedef struct pconn {
  int cfd, ufd;        /* client and upstream sockets; ufd -1 for a held connection */
  bool connecting;     /* upstream connect in progress */
  bool frozen;         /* STALL: not polled until heal */
  bool c_eof, u_eof;   /* EOF read from the client / upstream */
  bool u_shut, c_shut; /* SHUT_WR done on upstream / client */
  pbuf up, down;       /* client -> upstream, upstream -> client */
} pconn;

enum { CMD_NONE, CMD_CUT, CMD_HEAL, CMD_STOP };

struct proxy {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int wake[2];
  int lfd; /* listening socket, -1 while a REFUSE cut holds the port closed */
  int port;
  int target; /* under mu */
  /* command mailbox, under mu */
  int cmd, cmd_mode, cmd_rc;
  uint64_t cmd_seq, done_seq;
  /* poll thread state */
  bool cut;
  proxy_cut_mode mode;
  pconn *conns[PROXY_MAX_CONNS];
  int nconns;
  proxy_stats st; /* under mu */
};

static long pr_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void pr_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Closes fd with an RST (SO_LINGER 0): an abrupt end, as a cut link. */
static void pr_reset(int fd) {
  if (fd < 0) return;
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

/* Listens on 127.0.0.1:port (0: any).  Returns the socket or -1. */
static int pr_listen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
    close(fd);
    return -1;
  }
  pr_nonblock(fd);
  return fd;
}

static void pr_count(proxy *p, uint64_t *field, uint64_t n) {
  pthread_mutex_lock(&p->mu);
  *field += n;
  pthread_mutex_unlock(&p->mu);
}

static void pr_drop(proxy *p, int i, bool reset) {
  pconn *c = p->conns[i];
  if (reset) {
    pr_reset(c->cfd);
    pr_reset(c->ufd);
  } else {
    close(c->cfd);
    if (c->ufd >= 0) close(c->ufd);
  }
  free(c);
  p->conns[i] = p->conns[--p->nconns];
}

static void pr_accept(proxy *p) {
  while (p->nconns < PROXY_MAX_CONNS) {
    int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    pr_count(p, &p->st.accepted, 1);
    pconn *c = calloc(1, sizeof *c);
    if (!c) {
      pr_reset(fd);
      continue;
    }
    c->cfd = fd;
    c->ufd = -1;
    if (p->cut) { /* BLACKHOLE or STALL: held silent until heal */
      pr_count(p, &p->st.held, 1);
      p->conns[p->nconns++] = c;
      continue;
    }
    pthread_mutex_lock(&p->mu);
    int target = p->target;
    pthread_mutex_unlock(&p->mu);
    int u = target > 0 ? socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
    int rc = -1;
    if (u >= 0) {
      struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)target)};
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      rc = connect(u, (struct sockaddr *)&a, sizeof a);
      if (rc != 0 && errno == EINPROGRESS) {
        c->connecting = true;
        rc = 0;
      }
    }
    if (rc != 0) {
      pr_count(p, &p->st.upstream_err, 1);
      if (u >= 0) close(u);
      pr_reset(fd);
      free(c);
      continue;
    }
    c->ufd = u;
    if (!c->connecting) pr_count(p, &p->st.forwarded, 1);
    p->conns[p->nconns++] = c;
  }
}

/* Reads from fd into b; returns false on error. */
static bool pr_fill(int fd, pbuf *b, bool *eof) {
  if (b->off > 0 && b->off + b->len == sizeof b->data) {
    memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
  }
  size_t room = sizeof b->data - b->off - b->len;
  if (room == 0) return true;
  ssize_t r = recv(fd, b->data + b->off + b->len, room, 0);
  if (r > 0) {
    b->len += (size_t)r;
    return true;
  }
  if (r == 0) {
    *eof = true;
    return true;
  }
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* Writes b to fd; returns the bytes written, or -1 on error. */
static ssize_t pr_flush(int fd, pbuf *b) {
  if (b->len == 0) return 0;
  ssize_t w = send(fd, b->data + b->off, b->len, MSG_NOSIGNAL);
  if (w < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
  b->off += (size_t)w;
  b->len -= (size_t)w;
  if (b->len == 0) b->off = 0;
  return w;
}

/* Moves what can move on connection i after poll said something; returns
 * false when the connection is finished (dropped by the caller). */
static bool pr_service(proxy *p, pconn *c, short cre, short ure, bool *reset) {
  *reset = false;
  if (c->connecting && ure) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err != 0) {
      pr_count(p, &p->st.upstream_err, 1);
      *reset = true;
      return false;
    }
    c->connecting = false;
    pr_count(p, &p->st.forwarded, 1);
  }
  if (c->connecting) return true;
  if ((cre & (POLLIN | POLLHUP | POLLERR)) && !c->c_eof && c->up.len < sizeof c->up.data) {
    if (!pr_fill(c->cfd, &c->up, &c->c_eof)) goto fail;
  }
  if ((ure & (POLLIN | POLLHUP | POLLERR)) && !c->u_eof && c->down.len < sizeof c->down.data) {
    if (!pr_fill(c->ufd, &c->down, &c->u_eof)) goto fail;
  }
  ssize_t w = pr_flush(c->ufd, &c->up);
  if (w < 0) goto fail;
  if (w > 0) pr_count(p, &p->st.bytes_up, (uint64_t)w);
  w = pr_flush(c->cfd, &c->down);
  if (w < 0) goto fail;
  if (w > 0) pr_count(p, &p->st.bytes_down, (uint64_t)w);
  if (c->c_eof && c->up.len == 0 && !c->u_shut) {
    shutdown(c->ufd, SHUT_WR);
    c->u_shut = true;
  }
  if (c->u_eof && c->down.len == 0 && !c->c_shut) {
    shutdown(c->cfd, SHUT_WR);
    c->c_shut = true;
  }
  return !(c->u_shut && c->c_shut);
fail:
  *reset = true;
  return false;
}

/* Resets every connection held during a cut (no upstream). */
static void pr_drop_held(proxy *p) {
  for (int i = p->nconns - 1; i >= 0; i--)
    if (p->conns[i]->ufd < 0) {
      pr_drop(p, i, true);
      pr_count(p, &p->st.cut_resets, 1);
    }
}

static int pr_heal(proxy *p) {
  if (!p->cut) return 0;
  pr_drop_held(p);
  for (int i = 0; i < p->nconns; i++)
    p->conns[i]->frozen = false;
  p->cut = false;
  pr_count(p, &p->st.heals, 1);
  if (p->lfd < 0) {
    long deadline = pr_now_ms() + 2000;
    while ((p->lfd = pr_listen(p->port)) < 0 && pr_now_ms() < deadline) {
      struct timespec nap = {0, 20 * 1000 * 1000};
      nanosleep(&nap, NULL);
    }
    if (p->lfd < 0) return -1;
  }
  return 0;
}

static int pr_cut(proxy *p, proxy_cut_mode mode) {
  if (p->cut && pr_heal(p) != 0) return -1;
  p->cut = true;
  p->mode = mode;
  pr_count(p, &p->st.cuts, 1);
  for (int i = p->nconns - 1; i >= 0; i--) {
    if (mode == PROXY_STALL) {
      p->conns[i]->frozen = true;
    } else {
      pr_drop(p, i, true);
      pr_count(p, &p->st.cut_resets, 1);
    }
  }
  if (mode == PROXY_REFUSE && p->lfd >= 0) {
    close(p->lfd);
    p->lfd = -1;
  }
  return 0;
}

/* Takes the pending command (if any); returns false on CMD_STOP. */
static bool pr_commands(proxy *p) {
  char drain[64];
  while (read(p->wake[0], drain, sizeof drain) > 0) {
  }
  pthread_mutex_lock(&p->mu);
  int cmd = p->cmd, mode = p->cmd_mode;
  uint64_t seq = p->cmd_seq;
  p->cmd = CMD_NONE;
  pthread_mutex_unlock(&p->mu);
  if (cmd == CMD_NONE) return true;
  int rc = 0;
  if (cmd == CMD_CUT) rc = pr_cut(p, (proxy_cut_mode)mode);
  if (cmd == CMD_HEAL) rc = pr_heal(p);
  if (cmd == CMD_STOP) {
    while (p->nconns > 0)
      pr_drop(p, p->nconns - 1, false);
    if (p->lfd >= 0) close(p->lfd);
    p->lfd = -1;
  }
  pthread_mutex_lock(&p->mu);
  p->cmd_rc = rc;
  p->done_seq = seq;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return cmd != CMD_STOP;
}

static void *pr_loop(void *arg) {
  proxy *p = arg;
  struct pollfd fds[2 + 2 * PROXY_MAX_CONNS];
  int owner[2 + 2 * PROXY_MAX_CONNS]; /* connection index, or -1 */
  bool is_up[2 + 2 * PROXY_MAX_CONNS];
  for (;;) {
    int n = 0;
    fds[n] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
    owner[n++] = -1;
    bool listening = p->lfd >= 0 && p->nconns < PROXY_MAX_CONNS;
    if (listening) {
      fds[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
      owner[n++] = -1;
    }
    for (int i = 0; i < p->nconns; i++) {
      pconn *c = p->conns[i];
      if (c->frozen || c->ufd < 0) continue; /* stalled or held: untouched */
      short ce = 0, ue = 0;
      if (c->connecting) {
        ue = POLLOUT;
      } else {
        if (!c->c_eof && c->up.len < sizeof c->up.data) ce |= POLLIN;
        if (c->down.len > 0) ce |= POLLOUT;
        if (!c->u_eof && c->down.len < sizeof c->down.data) ue |= POLLIN;
        if (c->up.len > 0) ue |= POLLOUT;
      }
      if (ce) {
        fds[n] = (struct pollfd){.fd = c->cfd, .events = ce};
        owner[n] = i;
        is_up[n++] = false;
      }
      if (ue) {
        fds[n] = (struct pollfd){.fd = c->ufd, .events = ue};
        owner[n] = i;
        is_up[n++] = true;
      }
    }
    int r = poll(fds, (nfds_t)n, 200);
    if (r < 0 && errno != EINTR) break;
    if (fds[0].revents) { /* a command may drop connections: poll afresh after it */
      if (!pr_commands(p)) return NULL;
      continue;
    }
    if (r <= 0) continue;
    /* Gather each connection's events, then service it once. */
    short cre[PROXY_MAX_CONNS] = {0}, ure[PROXY_MAX_CONNS] = {0};
    bool any[PROXY_MAX_CONNS] = {false};
    int base = listening ? 2 : 1;
    for (int k = base; k < n; k++) {
      int i = owner[k];
      if (i < 0 || i >= p->nconns || !fds[k].revents) continue;
      if (is_up[k])
        ure[i] |= fds[k].revents;
      else
        cre[i] |= fds[k].revents;
      any[i] = true;
    }
    int live = p->nconns;
    for (int i = live - 1; i >= 0; i--) {
      if (!any[i] || p->conns[i]->frozen || p->conns[i]->ufd < 0) continue;
      bool reset;
      if (!pr_service(p, p->conns[i], cre[i], ure[i], &reset)) pr_drop(p, i, reset);
    }
    if (listening && fds[1].revents && p->lfd >= 0) pr_accept(p);
  }
  return NULL;
}

proxy *proxy_start(int target_port) {
  proxy *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->target = target_port;
  p->lfd = pr_listen(0);
  if (p->lfd < 0 || pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
    if (p->lfd >= 0) close(p->lfd);
    free(p);
    return NULL;
  }
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  getsockname(p->lfd, (struct sockaddr *)&a, &al);
  p->port = ntohs(a.sin_port);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (pthread_create(&p->thread, NULL, pr_loop, p) != 0) {
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    return NULL;
  }
  pthread_setname_np(p->thread, "sa-proxy");
  return p;
}

int proxy_port(const proxy *p) {
  return p->port;
}

void proxy_set_target(proxy *p, int target_port) {
  pthread_mutex_lock(&p->mu);
  p->target = target_port;
  pthread_mutex_unlock(&p->mu);
}

/* Posts a command and waits (5 s at most) until the thread has done it. */
static int pr_command(proxy *p, int cmd, int mode) {
  pthread_mutex_lock(&p->mu);
  uint64_t seq = ++p->cmd_seq;
  p->cmd = cmd;
  p->cmd_mode = mode;
  pthread_mutex_unlock(&p->mu);
  if (write(p->wake[1], "x", 1) < 0) {
    /* the pipe is full: the thread has a wake-up pending anyway */
  }
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 5;
  pthread_mutex_lock(&p->mu);
  int rc = 0;
  while (p->done_seq < seq && rc == 0)
    rc = pthread_cond_timedwait(&p->cv, &p->mu, &dl);
  int out = p->done_seq >= seq ? p->cmd_rc : -1;
  pthread_mutex_unlock(&p->mu);
  return out;
}

int proxy_cut(proxy *p, proxy_cut_mode mode) {
  return pr_command(p, CMD_CUT, (int)mode);
}

int proxy_heal(proxy *p) {
  return pr_command(p, CMD_HEAL, 0);
}

int proxy_is_cut(proxy *p) {
  pthread_mutex_lock(&p->mu);
  int c = p->st.cuts > p->st.heals;
  pthread_mutex_unlock(&p->mu);
  return c;
}

proxy_stats proxy_get_stats(proxy *p) {
  pthread_mutex_lock(&p->mu);
  proxy_stats s = p->st;
  pthread_mutex_unlock(&p->mu);
  return s;
}

void proxy_stop(proxy *p) {
  if (!p) return;
  if (pr_command(p, CMD_STOP, 0) != 0) {
    /* the thread did not answer: it still gets the command; join waits */
  }
  pthread_join(p->thread, NULL);
  close(p->wake[0]);
  close(p->wake[1]);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p);
}
