/* seqflow: the traffic of benches/restart/restart.sh, counted frame by frame.
 *
 *   seqflow send DST_IP PORT PPS SECS     UDP datagrams carrying a 64-bit sequence number,
 *                                         paced per millisecond; prints {"sent":N}
 *   seqflow recv BIND_IP PORT SECS        counts distinct sequence numbers and the longest
 *                                         gap between two arrivals; prints JSON at the end
 *   seqflow mesh PREFIX N PPS SECS        from every tap PREFIX0..PREFIX<N-1> (or the N names
 *                                         in file F when PREFIX is @F; their kernel
 *                                         side, in this namespace) sends PPS raw frames a
 *                                         second to the next tap's MAC (ethertype 0x88b5),
 *                                         and counts per tap what arrives and its longest
 *                                         gap; re-binds a tap whose ifindex changed (a cold
 *                                         restart re-creates taps); prints JSON at the end
 *
 * MACs of the mesh: 02:52:00:00:HI:LO for tap i (only frames to its own MAC count for a tap,
 * not the floods of an empty MAC table). Build: cc -O2 -o seqflow seqflow.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void pace(double start, uint64_t *done, uint64_t total, double pps, void (*one)(uint64_t, void *),
                 void *arg) {
  uint64_t due = (uint64_t)((now() - start) * pps);
  if (due > total) due = total;
  while (*done < due) one((*done)++, arg);
}

struct udp { int fd; struct sockaddr_in dst; };
static void udp_one(uint64_t seq, void *a) {
  struct udp *u = a;
  unsigned char b[64] = {0};
  uint64_t s = __builtin_bswap64(seq);
  memcpy(b, &s, 8);
  /* Never block: a datagram the stack cannot queue (the switch stopped reading and the tap's
   * queue holds this socket's buffer) is lost, not delayed until the switch is back. */
  sendto(u->fd, b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&u->dst, sizeof u->dst);
}

static int cmd_send(char **a) {
  struct udp u = {socket(AF_INET, SOCK_DGRAM, 0)};
  u.dst.sin_family = AF_INET;
  u.dst.sin_port = htons(atoi(a[1]));
  inet_pton(AF_INET, a[0], &u.dst.sin_addr);
  double pps = atof(a[2]), secs = atof(a[3]), start = now();
  uint64_t total = (uint64_t)(pps * secs), sent = 0;
  while (sent < total) {
    pace(start, &sent, total, pps, udp_one, &u);
    usleep(300);
  }
  printf("{\"sent\":%llu}\n", (unsigned long long)sent);
  return 0;
}

static int cmd_recv(char **a) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0), big = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(atoi(a[1]))};
  inet_pton(AF_INET, a[0], &me.sin_addr);
  if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind"); return 1; }
  struct timeval tv = {0, 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t cap = 1 << 24;
  unsigned char *seen = calloc(cap / 8, 1);
  uint64_t got = 0, dups = 0, max_seq = 0;
  double end = now() + atof(a[2]), last = 0, gap = 0;
  while (now() < end) {
    unsigned char b[2048];
    if (recv(fd, b, sizeof b, 0) < 8) continue;
    uint64_t s;
    memcpy(&s, b, 8);
    s = __builtin_bswap64(s) % cap;
    double t = now();
    if (last > 0 && t - last > gap) gap = t - last;
    last = t;
    if (seen[s / 8] & (1 << (s % 8))) { dups++; continue; }
    seen[s / 8] |= 1 << (s % 8);
    got++;
    if (s > max_seq) max_seq = s;
  }
  printf("{\"received\":%llu,\"duplicates\":%llu,\"max_seq\":%llu,\"max_gap_ms\":%.1f}\n",
         (unsigned long long)got, (unsigned long long)dups, (unsigned long long)max_seq, gap * 1e3);
  return 0;
}

#define ETH_P_MESH 0x88b5
struct tap { char name[IFNAMSIZ]; int fd; int ifindex; uint64_t sent, got; double last, gap; };
struct mesh { struct tap *t; int n, ep; };

static void mac_of(int i, unsigned char *m) {
  unsigned char b[6] = {0x02, 0x52, 0, 0, (unsigned char)(i >> 8), (unsigned char)i};
  memcpy(m, b, 6);
}

static void bind_tap(struct mesh *m, int i) {
  struct tap *t = &m->t[i];
  if (t->fd >= 0) { close(t->fd); t->fd = -1; }
  t->ifindex = if_nametoindex(t->name);
  if (!t->ifindex) return;
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_MESH));
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_MESH),
                            .sll_ifindex = t->ifindex};
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) { close(fd); t->ifindex = 0; return; }
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
  epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev);
  t->fd = fd;
}

static void mesh_one(uint64_t k, void *a) {
  struct mesh *m = a;
  int i = k % m->n;
  struct tap *t = &m->t[i];
  unsigned char f[60] = {0};
  mac_of((i + 1) % m->n, f);
  mac_of(i, f + 6);
  f[12] = ETH_P_MESH >> 8;
  f[13] = ETH_P_MESH & 0xff;
  memcpy(f + 14, &i, 4);
  t->sent++;
  if (t->fd >= 0) send(t->fd, f, sizeof f, MSG_DONTWAIT);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmd_mesh(char **a) {
  struct mesh m = {.n = atoi(a[1]), .ep = epoll_create1(0)};
  m.t = calloc(m.n, sizeof *m.t);
  FILE *names = a[0][0] == '@' ? fopen(a[0] + 1, "r") : NULL;
  if (a[0][0] == '@' && !names) { perror(a[0] + 1); return 1; }
  for (int i = 0; i < m.n; i++) {
    if (names) {
      if (fscanf(names, "%15s", m.t[i].name) != 1) { fprintf(stderr, "too few names\n"); return 1; }
    } else {
      snprintf(m.t[i].name, IFNAMSIZ, "%s%d", a[0], i);
    }
    m.t[i].fd = -1;
    bind_tap(&m, i);
  }
  double pps = atof(a[2]) * m.n, secs = atof(a[3]), start = now(), check = start;
  uint64_t total = (uint64_t)(pps * secs), sent = 0;
  struct epoll_event evs[256];
  while (sent < total || now() < start + secs + 0.5) {
    if (sent < total) pace(start, &sent, total, pps, mesh_one, &m);
    int k = epoll_wait(m.ep, evs, 256, 1);
    double t = now();
    for (int e = 0; e < k; e++) {
      int i = evs[e].data.u32;
      struct tap *tp = &m.t[i];
      unsigned char b[2048], me[6];
      mac_of(i, me);
      while (tp->fd >= 0 && recv(tp->fd, b, sizeof b, 0) >= 18) {
        if (memcmp(b, me, 6)) continue;
        tp->got++;
        if (tp->last > 0 && t - tp->last > tp->gap) tp->gap = t - tp->last;
        tp->last = t;
      }
    }
    if (t - check > 0.1) { /* a re-created tap has a new ifindex */
      check = t;
      for (int i = 0; i < m.n; i++)
        if (if_nametoindex(m.t[i].name) != (unsigned)m.t[i].ifindex) bind_tap(&m, i);
    }
  }
  uint64_t s = 0, g = 0;
  int dead = 0;
  double *gaps = calloc(m.n, sizeof *gaps), end = now();
  for (int i = 0; i < m.n; i++) {
    s += m.t[i].sent;
    g += m.t[i].got;
    gaps[i] = m.t[i].gap;
    if (end - m.t[i].last > 1.5) dead++;
  }
  qsort(gaps, m.n, sizeof *gaps, cmp);
  printf("{\"ports\":%d,\"sent\":%llu,\"received\":%llu,\"gap_p50_ms\":%.1f,\"gap_max_ms\":%.1f,"
         "\"ports_silent_at_end\":%d}\n",
         m.n, (unsigned long long)s, (unsigned long long)g, gaps[m.n / 2] * 1e3,
         gaps[m.n - 1] * 1e3, dead);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "send")) return cmd_send(argv + 2);
  if (argc == 5 && !strcmp(argv[1], "recv")) return cmd_recv(argv + 2);
  if (argc == 6 && !strcmp(argv[1], "mesh")) return cmd_mesh(argv + 2);
  fprintf(stderr, "usage: seqflow send IP PORT PPS SECS | recv IP PORT SECS | mesh PREFIX N PPS SECS\n");
  return 2;
}
