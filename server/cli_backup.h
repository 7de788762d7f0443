/*
 * cli_backup.h -- the backup and restore commands (cli_backup.c).
 *
 * What it is not: the other client commands (cli.c).
 *
 * Threads: the CLI's single thread.
 */
#ifndef SA_CLI_BACKUP_H
#define SA_CLI_BACKUP_H

/* `backup DEST`, `backup verify FILE`, `restore FILE --data-dir D ...`:
 * argv[0] is "backup" or "restore".  Returns the exit code (0 ok, 1
 * failure, 2 usage). */
int cli_backup_main(int argc, char **argv);

#endif
