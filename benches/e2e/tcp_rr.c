/* TCP request/response transactions per second, as netperf's TCP_RR measures them (netperf
 * is not in Debian main): one connection, a 1-byte request, a 1-byte response, again, for N
 * seconds. The rate is bound by the round trip through the switch, not by bandwidth, so it
 * shows per-packet latency (and a firewall's per-packet lookup) that iperf3 hides.
 *
 *   tcp_rr server ADDR PORT          answers one connection, then exits
 *   tcp_rr client ADDR PORT SECONDS  prints "transactions_per_second <x>"
 *
 * Built by benches/e2e/run.sh and secgroups.sh with cc; plain POSIX sockets, no options beyond
 * TCP_NODELAY (so a 1-byte write leaves at once, as netperf sets it). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int die(const char *what) {
    perror(what);
    return 1;
}

static struct sockaddr_in addr_of(const char *ip, const char *port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(port));
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "tcp_rr: bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static int serve(struct sockaddr_in a) {
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0) return die("socket");
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0) return die("bind");
    if (listen(l, 1) < 0) return die("listen");
    int c = accept(l, NULL, NULL);
    if (c < 0) return die("accept");
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char b;
    while (read(c, &b, 1) == 1)
        if (write(c, &b, 1) != 1) break;
    close(c);
    close(l);
    return 0;
}

static int client(struct sockaddr_in a, double seconds) {
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return die("socket");
    /* The server may still be starting: retry the connection for 3 s. */
    double give_up = now() + 3;
    while (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        if (now() > give_up) return die("connect");
        close(s);
        s = socket(AF_INET, SOCK_STREAM, 0);
        usleep(50000);
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char b = 'x';
    long n = 0;
    double t0 = now(), end = t0 + seconds, t = t0;
    while (t < end) {
        if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) return die("transaction");
        n++;
        if ((n & 255) == 0) t = now();
    }
    t = now();
    close(s);
    printf("transactions_per_second %.0f\n", (double)n / (t - t0));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "server") == 0) return serve(addr_of(argv[2], argv[3]));
    if (argc == 5 && strcmp(argv[1], "client") == 0)
        return client(addr_of(argv[2], argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: tcp_rr server ADDR PORT | tcp_rr client ADDR PORT SECONDS\n");
    return 2;
}
