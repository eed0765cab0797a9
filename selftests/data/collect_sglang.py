# The user's collector script for SGLang results, from their document (indentation restored).
import json
import os
import csv
import re
import argparse
#fieldnames = ["tp", "concurrency", "mean TTFT(ms)", "p90_tpot_ms",
# "output_throughput(tokens/s)", "total_throughput(tokens/s)",
# "mean TPOT(ms)", "mean e2e(ms)", "mean_input_len", "mean_output_len"]
fieldnames = ["concurrency", "mean TTFT(ms)", "input_throughput(tokens/s)",
"output_throughput(tokens/s)", "mean TPOT(ms)", "mean_input_len",
"mean_output_len"]
def main(args):
    data = []
    for _, _, files in os.walk(args.dir):
        for file in files:
            if file.endswith(".json"):
                # tp${TENSOR_PARALLEL}_CON${i}_in${INPUT_LENGTH}_out${OUTPUT_LENGTH}.json
                # pattern = r'tp(\d+)_CON(\d+)_in(\d+)_out(\d+)\.json'
                pattern = r'serving_benchmark_(\d+)_(\d+)_(\d+).json'
                # 使用正则表达式匹配文件名
                match = re.match(pattern, file)
                if match:
                    # tp = int(match.group(1))
                    # con = int(match.group(2))
                    # input_length = int(match.group(3))
                    # output_length = int(match.group(4))
                    con = int(match.group(1))
                    input_length = int(match.group(2))
                    output_length = int(match.group(3))
                else:
                    print("not match")
                with open(os.path.join(args.dir, file), 'r') as f:
                    result = json.load(f)
                    data.append(
                        {
                            # "tp": tp,
                            "concurrency": con,
                            "mean TTFT(ms)": result['mean_ttft_ms'],
                            # "p90_tpot_ms": result["p90_tpot_ms"],
                            "input_throughput(tokens/s)": result["input_throughput"],
                            "output_throughput(tokens/s)": result['output_throughput'],
                            # "total_throughput(tokens/s)": result["total_token_throughput"],
                            "mean TPOT(ms)": result['mean_tpot_ms'],
                            # "mean e2e(ms)": result['mean_e2el_ms'],
                            "mean_input_len": result['random_input_len'],
                            "mean_output_len": result['random_output_len']
                        }
                    )
    with open(os.path.join(args.dir, 'summary.csv'), 'w') as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(data)
if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=str, help="")
    args = parser.parse_args()
    main(args)
