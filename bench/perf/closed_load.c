/*
 * Closed-loop NATS request load for bench/perf/throughput.ts (`--client=c`).
 *
 * Why C: the Deno load processes (load.ts) use 0.5 to 0.9 of a core to keep 64 requests in
 * flight, on a 2-core machine where the broker and the responder need the rest, so the throughput
 * they measure is partly their own. This client keeps the same number of requests in flight from
 * one thread: each read of the socket is parsed whole, every reply in it is answered by a new
 * request, and the new requests go out in one write. A minimal NATS text-protocol client:
 * CONNECT with headers, one wildcard inbox subscription, PUB with a reply subject, MSG/HMSG
 * parsed just enough to skip the payload, PING answered with PONG. No TLS, no auth, loopback.
 *
 * Build: gcc -O2 -o closed_load closed_load.c
 * Run:   closed_load <host> <port> <subject> <in-flight> <seconds> <payload-hex>
 *
 * Protocol with the parent, as load.ts: it warms up (200 round trips), prints READY, waits for a
 * line on stdin, runs for <seconds>, then prints one JSON line:
 * {"requests": <replies in the window>, "statuses": <answers that were only a status, such as
 * 503 no responders>, "duplicates": <second answers to a request, ignored>, "cpuMs": <user+system
 * of this process in the window>}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int sock;
static char in[1 << 20];
static size_t have, start;
static char out[1 << 20];
static size_t out_len;
static unsigned long next_inbox;
static long statuses; /* answers that were only a status, such as 503 no responders */
static long duplicates; /* second answers to one request (two responders on its subject) */
static unsigned char *answered; /* by inbox number: whether its request was answered */
static size_t answered_len;
static char inbox_prefix[64]; /* "_INBOX.cl.<pid>.": its own, so that load processes never share replies */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
         ru.ru_stime.tv_usec / 1e3;
}

static void flush_out(void) {
  size_t done = 0;
  while (done < out_len) {
    ssize_t n = write(sock, out + done, out_len - done);
    if (n <= 0) { perror("write"); exit(1); }
    done += (size_t)n;
  }
  out_len = 0;
}

static void append(const char *data, size_t len) {
  if (out_len + len > sizeof out) flush_out();
  memcpy(out + out_len, data, len);
  out_len += len;
}

/* Queues one request: "PUB <subject> _INBOX.cl.<n> <len>\r\n<payload>\r\n". */
static void queue_request(const char *subject, const unsigned char *payload, size_t payload_len) {
  if (next_inbox >= answered_len) {
    size_t len = answered_len ? answered_len * 2 : 1 << 20;
    answered = realloc(answered, len);
    if (!answered) { perror("realloc"); exit(1); }
    memset(answered + answered_len, 0, len - answered_len);
    answered_len = len;
  }
  char head[512];
  int n = snprintf(head, sizeof head, "PUB %s %s%lu %zu\r\n", subject, inbox_prefix, next_inbox++,
                   payload_len);
  append(head, (size_t)n);
  append((const char *)payload, payload_len);
  append("\r\n", 2);
}

/* Reads once and returns how many answers (replies and statuses) arrived whole; answers PING. */
static long read_replies(void) {
  if (start == have) start = have = 0;
  if (have == sizeof in) {
    memmove(in, in + start, have - start);
    have -= start;
    start = 0;
  }
  ssize_t n = read(sock, in + have, sizeof in - have);
  if (n <= 0) { fprintf(stderr, "closed_load: the connection ended\n"); exit(1); }
  have += (size_t)n;
  long replies = 0, statuses_before = statuses;
  for (;;) {
    char *line = in + start;
    char *end = memmem(line, have - start, "\r\n", 2);
    if (!end) break;
    size_t line_len = (size_t)(end - line) + 2;
    int msg = strncmp(line, "MSG ", 4) == 0 || strncmp(line, "HMSG ", 5) == 0;
    if (!msg) {
      if (strncmp(line, "PING", 4) == 0) append("PONG\r\n", 6);
      if (strncmp(line, "-ERR", 4) == 0) fprintf(stderr, "%.*s", (int)line_len, line);
      start += line_len;
      continue;
    }
    /* The last field of MSG and HMSG is the total payload size. */
    char *last = memrchr(line, ' ', (size_t)(end - line));
    long total = strtol(last + 1, NULL, 10);
    if (have - start < line_len + (size_t)total + 2) break;
    /* MSG <inbox prefix><n> ...: a second answer to request n does not free a slot. */
    const char *inbox = memchr(line, ' ', line_len);
    unsigned long n = inbox ? strtoul(inbox + 1 + strlen(inbox_prefix), NULL, 10) : 0;
    if (n < answered_len && answered[n]) {
      duplicates++;
      start += line_len + (size_t)total + 2;
      continue;
    }
    if (n < answered_len) answered[n] = 1;
    /* A status-only message ("NATS/1.0 503" when nobody listens) is not a reply: counted apart. */
    if (line[0] == 'H' && total >= 12 && memcmp(line + line_len, "NATS/1.0 ", 9) == 0 &&
        line[line_len + 9] >= '1' && line[line_len + 9] <= '9') {
      statuses++;
    } else {
      replies++;
    }
    start += line_len + (size_t)total + 2;
  }
  return replies + (statuses - statuses_before);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: closed_load host port subject in-flight seconds payload-hex\n");
    return 2;
  }
  const char *subject = argv[3];
  long in_flight = atol(argv[4]);
  double seconds = atof(argv[5]);
  static unsigned char payload[65536];
  size_t payload_len = strlen(argv[6]) / 2;
  for (size_t i = 0; i < payload_len; i++) sscanf(argv[6] + 2 * i, "%2hhx", &payload[i]);

  sock = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  inet_pton(AF_INET, argv[1], &addr.sin_addr);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
  int one = 1;
  setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  snprintf(inbox_prefix, sizeof inbox_prefix, "_INBOX.cl.%d.", (int)getpid());
  char hello[512];
  int hello_len = snprintf(hello, sizeof hello,
                           "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,"
                           "\"no_responders\":true,\"lang\":\"c\",\"version\":\"0\","
                           "\"name\":\"bench-closed-load\"}\r\nSUB %s> 1\r\n",
                           inbox_prefix);
  append(hello, (size_t)hello_len);
  flush_out();

  /* Warm-up: 200 round trips, one at a time (the INFO line is skipped as a non-message). */
  for (int i = 0; i < 200; i++) {
    queue_request(subject, payload, payload_len);
    flush_out();
    while (read_replies() == 0) flush_out();
    flush_out();
  }
  printf("READY\n");
  fflush(stdout);
  char go[64];
  if (!fgets(go, sizeof go, stdin)) return 1;

  statuses = duplicates = 0;
  double cpu_start = cpu_ms();
  double end = now_ms() + seconds * 1e3;
  long outstanding = 0, answered_count = 0;
  for (; outstanding < in_flight; outstanding++) queue_request(subject, payload, payload_len);
  flush_out();
  while (outstanding > 0) {
    long replies = read_replies();
    answered_count += replies;
    outstanding -= replies;
    if (now_ms() < end) {
      for (long i = 0; i < replies; i++, outstanding++) {
        queue_request(subject, payload, payload_len);
      }
    }
    flush_out();
  }
  printf("{\"requests\": %ld, \"statuses\": %ld, \"duplicates\": %ld, \"cpuMs\": %.1f}\n",
         answered_count - statuses, statuses, duplicates, cpu_ms() - cpu_start);
  return 0;
}
