/*
 * api_dashboard.h -- the dashboard page served at GET /: one static HTML
 * document with inline script that reads /v1/status and /v1/store and renders
 * them with textContent (never innerHTML: keys are user data).
 * Threads: the string is constant; read it from anywhere.
 */
#ifndef SA_API_DASHBOARD_H
#define SA_API_DASHBOARD_H

/* The page, NUL-terminated.  Static. */
extern const char api_dashboard_html[];

#endif /* SA_API_DASHBOARD_H */
