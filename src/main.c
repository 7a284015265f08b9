/* kage: an HTTP shadow proxy on io_uring. Everything is in libkage. */
#include "kage.h"

int main(int argc, char *argv[])
{
	return kage_main(argc, argv);
}
