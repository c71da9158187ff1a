#!/usr/bin/env bash
# rag_load_plot.sh DAT_DIR PREFIX: gnuplot (Debian gnuplot-nox) plots of the RAG workload from
# `rag_load.py report --dat`: PREFIX-latency.{png,svg} (intrinsic and answer TTFT p50 / p99 vs load N,
# log scale) and PREFIX-throughput.{png,svg} (intrinsic calls/s and goodput turns/s vs N).
set -euo pipefail
DAT=$1 PREFIX=$2
command -v gnuplot >/dev/null || { echo "rag_load_plot: gnuplot missing"; exit 1; }
plots_lat="" plots_thr=""
k=1
for f in "$DAT"/*.dat; do
  s=$(basename "$f" .dat)
  plots_lat+="'$f' u 1:4 w lp lc $k pt 7 dt 1 t '$s intrinsic TTFT p99', '$f' u 1:2 w lp lc $k pt 6 dt 2 t '$s intrinsic TTFT p50', '$f' u 1:6 w lp lc $k pt 5 dt 3 t '$s answer TTFT p99', "
  plots_thr+="'$f' u 1:9 w lp lc $k pt 7 dt 1 t '$s intrinsic calls/s', '$f' u 1:11 w lp lc $k pt 6 dt 2 t '$s goodput turns/s (SLO)', "
  k=$((k + 1))
done
for term in png svg; do
  if [ $term = png ]; then t="pngcairo size 1100,700 font 'sans,10'"; else t="svg size 1100,700 font 'sans,10'"; fi
  gnuplot <<GP
set terminal $t
set output '$PREFIX-latency.$term'
set title 'RAG workload: TTFT vs load (closed loop, N concurrent conversations)'
set xlabel 'N (concurrent conversations)'
set ylabel 'ms (log)'
set logscale xy 2
set logscale y 10
set key outside right
set grid
plot ${plots_lat%, }
set output '$PREFIX-throughput.$term'
set title 'RAG workload: throughput vs load'
set ylabel 'per second'
unset logscale y
plot ${plots_thr%, }
GP
done
