/*
 * replay.c -- a main() for the fuzz targets outside libFuzzer: feeds every
 * file named on the command line (directories are walked one level deep)
 * to LLVMFuzzerTestOneInput.  Missing paths are skipped, so an empty crash
 * folder is fine.  Exit 0 when every input ran; a failing input aborts.
 */
#define _GNU_SOURCE
#include "fuzz.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static long replay_count;

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *b = realloc(buf, cap);
      if (!b) {
        free(buf);
        fclose(f);
        return -1;
      }
      buf = b;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  fclose(f);
  /* an exact-size copy, so ASan sees reads past the end of the input */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  if (len) memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  replay_count++;
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return 0; /* absent: nothing to replay */
  if (!S_ISDIR(st.st_mode)) return replay_file(path);
  DIR *d = opendir(path);
  if (!d) return -1;
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char **nn = realloc(names, (n + 1) * sizeof *names);
    if (!nn) break;
    names = nn;
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp_names);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", path, names[i]);
    if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && replay_file(full) != 0) rc = -1;
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  int rc = 0;
  for (int i = 1; i < argc; i++)
    if (replay_path(argv[i]) != 0) {
      fprintf(stderr, "cannot read %s\n", argv[i]);
      rc = 1;
    }
  printf("%s: %ld inputs replayed\n", argv[0], replay_count);
  if (replay_count == 0) {
    fprintf(stderr, "no input replayed: the corpus is missing\n");
    rc = 1;
  }
  return rc;
}
