#ifndef CAIRN_CMALLOC_SHIM_H
#define CAIRN_CMALLOC_SHIM_H
// glibc's allocator tuning (mallopt), which Swift's Glibc module leaves out. Only the broker
// imports it (BrokerServer.swift).
#include <malloc.h>
#endif
