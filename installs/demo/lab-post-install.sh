#!/bin/sh
echo "post-install: the image is written; site hooks run here"
sleep 1
echo "post-install: ok"
