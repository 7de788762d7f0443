/*
 * recovery.c -- the guide's recovery test in C.
 *
 * "Persist Data Locally", C++ recovery test, translated line for line to
 * softadastra.h: a first client writes app/name and closes; a second client
 * opens the same WAL (data/node-recovery.wal), which replays it, and reads
 * the value back.
 *
 * Run it from a directory that has a data/ folder (mkdir -p data).
 *
 * Expected output (recovery.expected):
 *
 *     first run value written
 *     recovered value: Softadastra
 */
#include <stdio.h>

#include <softadastra.h>

int main(void) {
  sa_options options = sa_options_persistent("node-recovery", "data/node-recovery.wal");

  options.auto_flush = true;
  options.enable_transport = false;
  options.enable_discovery = false;

  {
    sa_client *client = NULL;
    sa_error error = {0};

    if (sa_client_open(&client, &options, &error) != SA_OK) {
      fprintf(stderr, "%s\n", error.message);
      return 1;
    }

    if (sa_client_put(client, "app/name", "Softadastra", &error) != SA_OK) {
      fprintf(stderr, "%s\n", error.message);
      sa_client_close(client);
      return 1;
    }

    printf("first run value written\n");

    sa_client_close(client);
  }

  {
    sa_client *client = NULL;
    sa_error error = {0};

    if (sa_client_open(&client, &options, &error) != SA_OK) {
      fprintf(stderr, "%s\n", error.message);
      return 1;
    }

    sa_value value = {0};

    if (sa_client_get(client, "app/name", &value, &error) != SA_OK) {
      fprintf(stderr, "recovery failed: %s\n", error.message);

      sa_client_close(client);
      return 1;
    }

    printf("recovered value: %s\n", value.data);

    sa_value_free(&value);
    sa_client_close(client);
  }

  return 0;
}
