/* Generated from src/dashboard.html by tools/embed_dashboard.py: edit the HTML,
 * then run the script. See dashboard.h. */
#include "dashboard.h"

const char dashboard_html[] =
	"<!doctype html>\n"
	"<html><body>placeholder</body></html>\n";

const size_t dashboard_html_len = sizeof dashboard_html - 1;
