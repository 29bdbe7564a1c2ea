#!/bin/sh
echo "pre-install: checking the machine before its disks are written"
sleep 1
echo "pre-install: ok"
