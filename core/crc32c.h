/*
 * crc32c.h -- CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78),
 * the checksum of every WAL header and record.
 *
 * Pure function, thread-safe.  Uses the SSE4.2 crc32 instruction when the
 * CPU has it, otherwise a slicing-by-8 table.
 */
#ifndef SA_CRC32C_H
#define SA_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes at buf and returns the new CRC.
 * Chaining holds: sa_crc32c(sa_crc32c(0, a, n), b, m) is the CRC of a||b. */
uint32_t sa_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
