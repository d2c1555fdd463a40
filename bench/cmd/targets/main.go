// Command targets reads `go test -bench` output of the bench module (from
// files, or stdin) and prints markdown tables of the medians, then issue 7's
// speed targets: each a ratio or difference of medians measured in that
// output. It exits
// 0 even when a target is missed: the table says which.
//
//	go run ./cmd/targets results/micro.txt results/load.txt results/memory.txt
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/sessionkit/session/bench"
)

func main() {
	var readers []io.Reader
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		readers = append(readers, f)
	}
	if len(readers) == 0 {
		readers = append(readers, os.Stdin)
	}
	r, err := bench.ParseResults(io.MultiReader(readers...))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	bench.WriteSummary(os.Stdout, r)
	fmt.Println()
	if missed := bench.WriteTargets(os.Stdout, r); missed > 0 {
		fmt.Printf("\n%d of %d targets missed or not measured.\n", missed, len(bench.Targets))
	}
}
