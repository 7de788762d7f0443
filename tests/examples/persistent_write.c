/*
 * persistent_write.c -- the guide's "persistent write" program in C.
 *
 * "Persist Data Locally", option A, translated line for line from the C++
 * SDK to softadastra.h: open a persistent node whose WAL lives at
 * data/node-persistent.wal, write settings/theme = dark, read it back and
 * print the guide's output block.
 *
 * Run it from a directory that has a data/ folder (mkdir -p data): the
 * library does not create directories.  Build an installed copy with
 *
 *     cc persistent_write.c $(pkg-config --cflags --libs softadastra)
 *
 * Expected output (persistent_write.expected):
 *
 *     persistent write
 *       key      : settings/theme
 *       value    : dark
 *       wal path : data/node-persistent.wal
 *       size     : 1
 */
#include <stdio.h>

#include <softadastra.h>

int main(void) {
  sa_options options = sa_options_persistent("node-persistent", "data/node-persistent.wal");

  options.auto_flush = true;
  options.enable_transport = false;
  options.enable_discovery = false;

  sa_client *client = NULL;
  sa_error error = {0};

  if (sa_client_open(&client, &options, &error) != SA_OK) {
    fprintf(stderr, "failed to open client: %s\n", error.message);

    return 1;
  }

  if (sa_client_put(client, "settings/theme", "dark", &error) != SA_OK) {
    fprintf(stderr, "failed to write value: %s\n", error.message);

    sa_client_close(client);
    return 1;
  }

  sa_value value = {0};

  if (sa_client_get(client, "settings/theme", &value, &error) != SA_OK) {
    fprintf(stderr, "failed to read value: %s\n", error.message);

    sa_client_close(client);
    return 1;
  }

  printf("persistent write\n");
  printf("  key      : settings/theme\n");
  printf("  value    : %s\n", value.data);
  printf("  wal path : %s\n", options.wal_path);
  printf("  size     : %zu\n", sa_client_size(client));

  sa_value_free(&value);
  sa_client_close(client);

  return 0;
}
