/*
 * Open-loop NATS request load at a fixed rate, for bench/overhead.ts.
 *
 * Why C: at 500 requests a second a Deno load client's own timer and event
 * loop jitter is of the order of the tail being measured (bench/overhead.ts
 * measures both clients against the same responder and prints the figures).
 * This client sends on schedule from one thread (clock_nanosleep to absolute
 * times on CLOCK_MONOTONIC) and reads replies on another, so a late reply
 * never delays the next send. A minimal NATS text-protocol client: CONNECT
 * with headers, one wildcard inbox subscription, PUB with a reply subject
 * holding the request's sequence number, MSG/HMSG parsed just enough to find
 * that number, PING answered with PONG. No TLS, no auth, loopback only. It asks for
 * SCHED_FIFO priority (see main) so that a loaded machine delays it as little as possible.
 *
 * Build: gcc -O2 -pthread -o loadgen loadgen.c
 * Run:   loadgen <host> <port> <subject> <rate> <count> <warmup> <payload-hex> <seq-offset>
 *          <seq-subject:0|1> <timeout-ms>
 *   subject      the request subject; with seq-subject=1 the sequence number is appended
 *   payload-hex  the request payload ("" for none); with seq-offset >= 0, ten decimal digits
 *                of the sequence number overwrite the payload from that byte
 *   warmup       requests sent first at the same rate and left out of the results
 *
 * Output (stdout), after the last reply or the timeout: one line per measured request,
 * "seq sched_us lag_us latency_us error" (sched_us: its scheduled send time from the start;
 * lag_us: how late the client actually sent it; latency_us: reply time minus the scheduled
 * send time, -1 when no reply came; error: 1 when the reply was an ErrorResponse), then
 * "cpu_ms <user+system of this process over the measured requests> wall_ms <window>".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int sock;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static long total;           /* warmup + measured */
static int64_t *sched_ns, *sent_ns, *recv_ns;
static char *is_error;
static volatile long received;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
         ru.ru_stime.tv_usec / 1e3;
}

static void write_all(const char *buf, size_t len) {
  pthread_mutex_lock(&write_lock);
  while (len > 0) {
    ssize_t n = write(sock, buf, len);
    if (n <= 0) { perror("write"); exit(1); }
    buf += n;
    len -= (size_t)n;
  }
  pthread_mutex_unlock(&write_lock);
}

/* The reply reader: one buffer, parsed a line (and its payload) at a time. */
static char buf[1 << 20];
static size_t have, start;

static void *reader(void *arg) {
  (void)arg;
  for (;;) {
    if (start > 0 && start == have) start = have = 0;
    if (have == sizeof buf) { /* compact */
      memmove(buf, buf + start, have - start);
      have -= start;
      start = 0;
    }
    ssize_t n = read(sock, buf + have, sizeof buf - have);
    if (n <= 0) return NULL;
    int64_t t = now_ns();
    have += (size_t)n;
    for (;;) {
      char *line = buf + start;
      char *end = memmem(line, have - start, "\r\n", 2);
      if (!end) break;
      size_t line_len = (size_t)(end - line) + 2;
      if (strncmp(line, "PING", 4) == 0) {
        write_all("PONG\r\n", 6);
        start += line_len;
        continue;
      }
      int hmsg = strncmp(line, "HMSG ", 5) == 0;
      if (!hmsg && strncmp(line, "MSG ", 4) != 0) { /* +OK, PONG, INFO, -ERR */
        if (strncmp(line, "-ERR", 4) == 0) fprintf(stderr, "%.*s", (int)line_len, line);
        start += line_len;
        continue;
      }
      /* MSG <subject> <sid> [reply] <#bytes> / HMSG <subject> <sid> [reply] <#hdr> <#total> */
      char *fields[6];
      int nf = 0;
      char *p = line;
      while (p < end && nf < 6) {
        while (p < end && *p == ' ') p++;
        if (p >= end) break;
        fields[nf++] = p;
        while (p < end && *p != ' ') p++;
      }
      long total_len = strtol(fields[nf - 1], NULL, 10);
      long hdr_len = hmsg ? strtol(fields[nf - 2], NULL, 10) : 0;
      if (have - start < line_len + (size_t)total_len + 2) break; /* payload not complete */
      char *payload = line + line_len;
      const char *dot = memrchr(fields[1], '.', (size_t)(fields[2] - fields[1]));
      long seq = dot ? strtol(dot + 1, NULL, 10) : -1;
      if (seq >= 0 && seq < total && recv_ns[seq] == 0) {
        recv_ns[seq] = t;
        is_error[seq] = hdr_len > 0 && memmem(payload, (size_t)hdr_len, "ErrorResponse", 13) != NULL;
        __atomic_add_fetch(&received, 1, __ATOMIC_SEQ_CST);
      }
      start += line_len + (size_t)total_len + 2;
    }
  }
}

static size_t unhex(const char *hex, unsigned char *out) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 11) {
    fprintf(stderr, "usage: loadgen host port subject rate count warmup payload-hex seq-offset "
                    "seq-subject timeout-ms\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  const char *subject = argv[3];
  double rate = atof(argv[4]);
  long count = atol(argv[5]);
  long warmup = atol(argv[6]);
  unsigned char payload[65536];
  size_t payload_len = unhex(argv[7], payload);
  long seq_offset = atol(argv[8]);
  int seq_subject = atoi(argv[9]);
  long timeout_ms = atol(argv[10]);
  total = warmup + count;
  sched_ns = calloc((size_t)total, sizeof *sched_ns);
  sent_ns = calloc((size_t)total, sizeof *sent_ns);
  recv_ns = calloc((size_t)total, sizeof *recv_ns);
  is_error = calloc((size_t)total, 1);

  /* Real-time priority when allowed (root, CAP_SYS_NICE): the client sleeps nearly all the time
   * (about 2% of a core at 500/s), and other work on a loaded machine then cannot delay its sends
   * or reply stamps. Both threads inherit it. Refused: it runs at normal priority and says so. */
  struct sched_param sp = {.sched_priority = 10};
  if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
    fprintf(stderr, "loadgen: no real-time priority (%s), running at normal priority\n",
            strerror(errno));
  }
  sock = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &addr.sin_addr);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
  int one = 1;
  setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* INFO, then CONNECT and a PING whose PONG says the subscription is in place. */
  char line[4096];
  ssize_t n = read(sock, line, sizeof line - 1);
  if (n <= 0 || strncmp(line, "INFO", 4) != 0) { fprintf(stderr, "no INFO\n"); return 1; }
  const char *hello = "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,"
                      "\"no_responders\":true,\"lang\":\"c\",\"version\":\"0\","
                      "\"name\":\"overhead-loadgen\"}\r\nSUB _INBOX.ovh.> 1\r\nPING\r\n";
  write_all(hello, strlen(hello));
  size_t got = 0;
  while (!memmem(line, got, "PONG\r\n", 6)) {
    n = read(sock, line + got, sizeof line - 1 - got);
    if (n <= 0) { fprintf(stderr, "no PONG\n"); return 1; }
    got += (size_t)n;
  }
  pthread_t thread;
  pthread_create(&thread, NULL, reader, NULL);

  int64_t period = (int64_t)(1e9 / rate);
  int64_t t0 = now_ns() + 10000000; /* 10 ms from now */
  static char msg[65536 + 1024];
  double cpu_start = 0;
  for (long i = 0; i < total; i++) {
    int64_t due = t0 + i * period;
    struct timespec ts = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {}
    if (i == warmup) cpu_start = cpu_ms();
    char seq_digits[24];
    snprintf(seq_digits, sizeof seq_digits, "%010ld", i);
    if (seq_offset >= 0 && (size_t)seq_offset + 10 <= payload_len) {
      memcpy(payload + seq_offset, seq_digits, 10);
    }
    int head = seq_subject
      ? snprintf(msg, 1024, "PUB %s%ld _INBOX.ovh.%ld %zu\r\n", subject, i, i, payload_len)
      : snprintf(msg, 1024, "PUB %s _INBOX.ovh.%ld %zu\r\n", subject, i, payload_len);
    memcpy(msg + head, payload, payload_len);
    memcpy(msg + head + payload_len, "\r\n", 2);
    sched_ns[i] = due;
    sent_ns[i] = now_ns();
    write_all(msg, (size_t)head + payload_len + 2);
  }
  int64_t last = t0 + (total - 1) * period;
  while (__atomic_load_n(&received, __ATOMIC_SEQ_CST) < total &&
         now_ns() < last + timeout_ms * 1000000LL) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
    nanosleep(&ts, NULL);
  }
  double cpu_end = cpu_ms();
  int64_t wall_end = now_ns();
  int64_t measured_start = t0 + warmup * period;
  shutdown(sock, SHUT_RDWR);
  pthread_join(thread, NULL);
  for (long i = warmup; i < total; i++) {
    printf("%ld %.1f %.1f %.1f %d\n", i - warmup, (sched_ns[i] - measured_start) / 1e3,
           (sent_ns[i] - sched_ns[i]) / 1e3, recv_ns[i] ? (recv_ns[i] - sched_ns[i]) / 1e3 : -1.0,
           is_error[i]);
  }
  printf("cpu_ms %.1f wall_ms %.1f\n", cpu_end - cpu_start, (wall_end - measured_start) / 1e6);
  return 0;
}
