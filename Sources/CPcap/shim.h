#ifndef SHOAL_CPCAP_SHIM_H
#define SHOAL_CPCAP_SHIM_H
#include <pcap/pcap.h>
#endif
