"""The exact import problem of one buyer, behind exact clearing, VCG and posted prices:

    maximise  V(S) = g(n_own + x_S) - p_S,   g(n) = -sqrt(K / n),

over sets S of sellers with sizes s_j > 0 and prices p_j (x_S, p_S: sums over S). Since
G_i(S) = g(n_own + x_S) - g(n_own), this is G_i(S) - sum_{j in S} tau_ij up to a constant.

Why the answer is exact. g is increasing and concave, so:

1. Sellers with p_j <= 0 are in every optimum. A seller whose marginal gain on top of the
   sure set does not beat its price is in no optimum; one whose marginal gain on top of all
   remaining candidates still beats it is in every optimum. Both rules repeat to a fixpoint.
   Last, the continuous relaxation of 2 is redone with each remaining seller's decision
   turned around (left out when 2 takes it fully, taken otherwise), for all of them at once
   in closed form: along the sellers by price per sample, the pool less the pool where g'
   falls to each price increases, so the prefix taken fully moves to where that difference
   passes the seller's size (either sign). Where that value stays below a known set by more
   than tol / 4 (the relaxation's full sellers with or without the next one, or a set the
   caller knows: for VCG, the best one known without a seller), no set that turns the seller
   around can be best, and it keeps the relaxation's decision. With prices per sample 0.1 %
   to 30 % apart, this leaves one or two of 199 sellers (the depth-first search of 3a used
   to walk the others). When all prices per sample lie within 0.1 % of each other it is
   skipped: it settles few sellers there, and the flip costs of 3b already rule out the
   others. VCG needs the best value without each member of a best set: the rule runs for all
   those problems at once (the seller dropped keeps its place in the order with size and
   price 0, which changes no relaxation, so each row only shifts the pools after it), and
   where it leaves at most 8 sellers undecided, every subset of them is tried on top of the
   sellers settled in. With about 118 imports per buyer at m = 200 and prices per sample
   30 % apart, that settles all 23,595 such problems (a VCG round took about 5.8 s solving
   each and takes 0.5 to 0.7 s). With them closer, the rule settles more the better the sets
   known without each seller: each problem solved (over the sellers the rule left undecided)
   gives every other member j' of its best set S the set S with the seller dropped taken
   back and j' left out, and the rule runs again for the problems left (see
   :func:`mechanisms.ipfl.best_values_without`). With 1 % apart, 12 % of the problems are
   solved (38 % when each had only its best replacement: a round took 7.5 to 7.7 s and
   takes 2.3 to 2.9 s), and with 0.1 % apart 41 % (84 %: 18.6 to 22 s, now 7.0 to 7.7 s).
   Sizes on a lattice (sample counts are integers) share one flip table (3d) over all
   sellers: where the relaxation takes j fully, a set without j flips j and others F, and
   loses w_j plus L at pool n_r - s_j + x_F plus F's costs; the cheapest F for every pool
   change gives every such problem a bound at once, and the set of the least total, traced
   back, is best when F does not flip j as well. The sets known without each seller bound
   the costs and pools the table must hold. With integer sizes and prices per sample tied to
   1e-6 to 1 %, it settles all but about two of a buyer's 119 problems, and a VCG round
   takes about 1.7 to 2.3 s instead of 8 to 24 s. Sizes off every binary lattice but near a
   decimal one (some of them reported 1.3 times the true ones, say) are moved onto it, as in
   3f; a table of over 2^22 cells keeps one bit per cell, and the sets are traced from those
   bits. With a tenth, half or all of the sizes reported 1.3 times integers and prices per
   sample tied to 1e-6, a buyer's problems took 100 to 160 ms and take 10 to 15 ms.
2. The rest (the core) is decomposed around the continuous relaxation: fill by ascending
   price per sample q_j = p_j / s_j until the slope g'(n) falls to the next ratio; it stops
   at pool n0 with slope r = g'(n0), having taken the set R fully. Every q_j <= r in R and
   q_j >= r outside R, so with w_j = |p_j - r s_j| and phi(x) = g(n_own + x) - r x,

       V(S) = U - L(x_S) - sum_{j in S xor R} w_j,    L(x) = phi(x0) - phi(x) >= 0,

   with U the relaxation's value, x0 = n0 - n_own, and L convex with L(x0) = 0. Maximising V
   is minimising the loss L + W over the sets of "flips" (sellers added to or dropped from
   R) with W their total cost w, every term non-negative.
3. The core is solved in one of thirteen ways, all exact:

   a. Depth-first branch-and-bound over the sellers sorted by price per sample, bounded by
      the continuous relaxation of the sellers not yet decided; of a node's two children
      (the next seller in or out), the one with the higher bound goes first. The
      relaxation takes whole sellers by price per sample while g' stays above that price:
      along that order, the sizes summed less the pool where g' falls to each price
      increase, so those sellers are a prefix, walked for the first four and otherwise
      found by bisection: a node costs a few operations however many sellers are left. It
      settles a typical buyer in a few dozen nodes and is tried first (after 3c and 3j)
      unless 16 or more sellers price within 0.1 % of the relaxation's price per sample
      (ties, where its bound cannot prune), and gives up after 256 nodes.
   b. The flip search: states (pool n, flip cost W), each one set of flips decided so far,
      expanded over the sellers sorted by flip cost, several sellers per step. Whatever the
      sellers left add, a state ends with loss at least W plus the least of: L(n) (no more
      flips); for flips in one direction, L at the reachable pool nearest n0 plus the
      cheapest flip left, and min_t [L(n +- t) + rho t] with rho the least flip cost per
      sample left and t between the smallest and the total size left (convex in t, solved
      in closed form); for flips in both directions, the cheapest pair of flips plus L at
      the nearest reachable pool. When all sizes are multiples of some g (integers, halves,
      ...), pools move on that lattice and t is rounded to it. A state whose bound cannot
      beat the best complete state found by more than ``tol`` is dropped; of two states
      with the same pool on the lattice only the cheaper one is kept; a seller whose flip
      alone costs more than that margin is never flipped. Every state is itself a complete
      import set, so the best one seen is a valid answer at all times, and nothing dropped
      could have beaten it by more than ``tol``.
   c. Few distinct sizes (at most 4, tried first): among sellers of equal size a set takes
      the cheapest ones, so only the count taken from each size matters. Every combination
      of counts of all sizes but the most frequent one is enumerated (at most 2^15); for
      the most frequent size, the k-th cheapest seller pays off exactly while its marginal
      gain beats its price (decreasing gains, increasing prices), found by bisection.
   d. The flip table, when all sizes are multiples of some g (on a lattice): a 0/1 knapsack
      table over the flips gives the cheapest flips for every pool change in lattice units,
      and the best pool directly. Only sellers whose flip alone costs no more than the best
      state's loss can flip, and only pools where L alone stays within that loss can be
      optimal (where L > 0 at all of them, flips cost at most the loss less the least L
      there). After the first t flips, the table keeps only the partial pool changes that
      the flips taken can reach and those left can bring back to those pools: a direction's
      flips move the pool by at most its k largest sizes when no k + 1 of them cost within
      the loss, and when k of its smallest would overshoot the target pools by more than the
      other direction can move. Each direction is taken by ascending cost, so the flips left
      grow dearer and their reach shrinks; of three orders (by cost, shrinking flips first,
      growing flips first) the one with the fewest cells is used. When most flips have
      integral sizes and the others make the lattice finer (sizes misreported by a factor
      1.3 lie on a lattice of 0.1), the integral flips go first, on their own lattice (ten
      times coarser, so a tenth of the cells), and the table is then spread onto the fine
      one for the others; a direction's reach adds up over the two runs. A narrow table
      over the 64 cheapest flips, alternating between the two directions and spanning two
      largest sizes around n0, supplies a state close to the best when it is small (at most
      2^19 cells; else the meet-in-the-middle search below does), and the table narrowed by
      that state's loss is built at once when it has at most 2^21 cells. A larger one is
      first narrowed by the alternating table when that has at most 2^21 cells and a
      quarter of its cells; one still larger (at most 2^28) waits for the flip search,
      which hands over once it has taken about as long as the table would (and is then
      narrowed by a larger alternating table). When the flips of such a table together cost
      at most 2^8 tol and no size is 16 times the next smaller, the flip search goes first
      for 2^10 states: with integer sizes from 1000 to 1099 and prices per sample tied to
      1e-10 to 1e-8, it settles all 200 buyers, and a round takes about 0.2 s (0.44 to
      3.9 s when 3l, 3m and 3j went first). Larger ones go to the rounded tables of 3i,
      on whole multiples of the lattice. The best pool is looked for next to n0
      first, and then only where L alone beats that pool's loss. The table adds flip
      costs in whole units of tol / (4 k), rounded up, with k the most flips a set within
      the loss can have (the cheapest growing and shrinking flips that fit in it together,
      each direction within its reach), as integers of the narrowest type (16, 32 or 64
      bits) that holds every sum within the loss: its best set is within tol / 4 of the
      best, and the exact sums through each flip, kept, trace that set back. Tables of
      over 2^22 cells keep instead one bit per cell (where the sum through the flip wins),
      and a flip whose cells take over 1 MB updates them in blocks of 256 kB, which stay
      in cache: twice as fast as whole passes over such wide tables.
   e. Every flip free (prices per sample tie exactly, on a lattice): the best set reaches
      the reachable pool nearest n0, below or above (L is convex), a subset-sum question
      answered by tables of bits (one integer per flip, shifted and or-ed). The narrow
      table of alternating flips goes first; when it reaches the lattice point next to n0
      with the least L, no set can do better. Otherwise the table of bits over the ranges of
      3d (at most 2^28 cells) decides; when the tables are large the flip search goes first.
      Beyond 2^28 cells the rounded tables of 3i decide, on whole multiples of the lattice
      (integers in bands near 10^3 and 10^6 at a posted price per sample: the flip search
      alone ran past 2 s at every buyer of 14 of 30 such markets and past 60 s at one, and
      3i's step 3m settles each in about 10 ms).
   f. Every flip free, integral sizes but for at most 32 others (sizes reported as a
      multiple of the true ones, say), after a short flip search: a table of bits lists the
      pool changes the integral flips reach; for a set S of the others, the best pool is the
      reachable lattice point next to n0 below or above. The sets S whose pools can beat the
      search's best state are paired with their reachable points one by one when they are
      few (two per subset of a half). Otherwise: were every lattice point reachable, the
      best S would follow from the subset sums of the others mod g (meet in the middle);
      that bound is exact when its set is reachable, and otherwise the sets S whose pools
      can still win (at most 2^16 of them) are paired one by one. Each half's subset sums
      are built sorted, one flip at a time, and remembered for later buyers. With more than
      32 such sizes, sizes within 2^-44 (relative) of multiples of 10^-k, k <= 3 (a decimal
      factor such as 1.3), are moved onto that lattice and 3e applies: every pool moves by
      less than 2^-44 of itself, far less than ``tol``. When prices per sample do not all
      tie, sizes on such a decimal lattice but on no binary one are moved onto it in the
      same way, and 3d applies.
   g. Every flip free, sizes on no lattice (3f does not apply or cannot decide): a set that
      can beat the search's best state has its pool where L is lower, so its total size lies
      in an interval. That bounds its number of sellers k, and which sellers it can hold
      (one whose size plus the k - 1 smallest, or largest, misses the interval cannot). When
      at most 4 values of k remain (sizes in a narrow band), each such set of k out of n
      candidates is split into two parts of about k / 2 (of min(k, n - k) sellers to leave
      out, when k > n / 2); for each first part, the best disjoint second part reaches the
      nearest total size to n0 below or above, in the sorted list of second parts. This is
      exact when the lists are short (at most 2^16 parts in all). The search is first
      offered the best set of the k smallest or largest sellers, and, while the lists are
      too long, the best set of k sellers (k at most 64) paired from two disjoint lists of
      the sellers nearest the mean size such a set needs (longer lists each time), after
      which the search goes on for an eighth as many states as parts listed; each narrows
      the interval before the lists are made again. For k above 64 it is offered the k
      sellers nearest that mean size and, after a short search, that set polished (the best
      toggle of up to four sellers): with many sellers of a narrow band in the set, this
      usually lands within ``tol`` of the relaxation. A set within ``tol`` of the relaxation
      ends the search at once.
   h. Flips with costs, sizes on no lattice: as in 3g, a set that can beat the search's
      best state (once it is offered the best set of the k smallest or largest sellers,
      flip costs included) has its total size in an interval, which bounds its number of
      sellers k and which sellers it can hold. When at most 4 values of k remain and the
      sets they allow number at most 2^18 (n0 near the least or the most that k sellers
      of a narrow band can reach), every such set is evaluated, its sums built one member
      at a time, after the search has gone on for an eighth as many states.
   i. Sizes on no lattice, when 3f to 3h cannot decide: flip tables over the sizes rounded
      to a lattice of step d, down for the sets whose pools lie above n0 and up for those
      below it. A set of k flips then lies E (less than k d) above, or below, its table pool
      x, so its loss is at least its cost in the table, less lambda E, plus the least of
      L(x + E) - lambda E over that range (convex in E), when each flip adds lambda times
      its rounding to its cost (lambda >= 0 for rounding down, <= 0 for up, so sums
      stay >= 0). With lambda = L' at the best set found on that side in the last round
      (0 if none), the bound is tight where L' is near lambda. The first lattice puts
      1024 steps in the largest flip; each side's next is 2 to 4 times finer (more for a
      larger gap), or the same once when lambda moved by more than a quarter and the gap
      exceeds 4 tol (closer, a finer lattice gains more), until the search's best state,
      offered the cheapest sets of the 8 cells with the lowest bounds each time, is within
      ``tol`` of both bounds. Later tables look only at pools where a cell's bound beat the
      best state. Where a size is 16 times the next smaller one, the search goes first for
      2^10 states and then 3m (with sizes in bands 1 % wide near 10^3 and 3 * 10^4 and ties
      to 1e-6 or 1e-9, a round at m = 200 took about 1.7 s rather than 2.6 s with 2^16
      states first; with exact ties, 3m's centred sets settle the buyers that the search's
      polishing settled once it grew, and in bands near 10^3 and 3 * 10^4 or near 10^2, 10^4
      and 10^6, a round took 0.3 to 0.55 s rather than 0.7 to 6.2 s with 2^14 states
      first; without such a gap the short search only cost time, 15 % of a round with
      sizes from 50 to 2000 and ties to 1e-6); when 3m declines, or
      without the gap, the search for 2^16 states, 3l and 3m (each declines at once at a
      loss where it declined before, for too many sets or solves: the search seldom lowers
      it), again between rounds for a share of their cells, and alone once a round would
      exceed 2^30 cells (the first time, a round on lattices coarse enough to fit goes
      before: with sizes in three bands near 10^2, 10^4 and 10^6 and 3m switched off, one
      side was left 2.4 tol open at 6.7e8 cells, the next lattice needed 1.4e9, and the
      search alone went on for over 40 s; the round that fits, of 8.6e8 cells, closes it in
      1.7 s).
      When all flips together cost at most 2^12 tol (prices per sample tied to within about
      1e-7 in the markets measured), a set's pool matters more than which flips it pays
      for, and the tables' sets alone came closer to the best too slowly: each new best
      state is then polished before the next round (the best toggles of up to four of the
      120 cheapest flips and the state's own, while they help), and so is the set traced
      from the cell of the lowest bound of a table of 2^26 cells or more (with ties to
      1e-8, the best state otherwise stayed over a tol above the best set while the tables
      grew to hundreds of millions of cells).
   j. The depth-first search of 3a with the sellers taken largest first, its bound still
      the relaxation of the sellers not yet decided: for up to 1024 nodes after 3c when
      sizes span more than three magnitudes (largest over smallest; the buyers it settled in
      the markets measured took at most 1024, and in two bands near 10^3 and 10^6, 4096
      failing nodes per buyer took over a third of a round), unless 16 or more sizes lie on
      each side of a gap of 16 times (bands of two scales: among integers near 10^3 with
      ties to 1e-6, it settled every buyer with 8 sellers near 10^6 and none with 16 to 100,
      where its failing nodes took a third to a half of a round), and before a flip
      table (3d) of more than 2^21 cells, with work in proportion to the table's (one node
      per 16384 cells; 1024 nodes before a table beyond 2^28 cells, which is never built:
      with sizes in float32 and prices per sample tied to 1e-2, the lattice of 2^-24 made
      that work run for up to 0.4 s per buyer before the rounded tables of 3i took 0.05 s,
      and a round at m = 200 took about 2.4 s rather than 57 s; 3l, tried before 3j, now
      settles most such buyers). Once the large
      sellers are decided, the many small ones fill the pool nearly continuously, so the
      bound nearly attains and prunes (by price per sample, small and large sellers
      interleave, and each large one is decided again under every choice of the small ones
      before it). When sizes span many magnitudes, prices per sample may tie while flip
      costs do not, and it then settles in a few hundred nodes buyers that the tables and
      the flip search took seconds for. Taking the child with the higher bound first
      matters most here: it finds the best set early, and given that set's value the search
      proves it in a few hundred nodes; taking the seller in first needed about a hundred
      times as many nodes in the markets measured.
   k. Sizes near a decimal lattice: rounding each pool change to the nearest multiple of
      10^-k (k <= 3, the coarsest that works) moves them all together by at most an eighth
      of that step (sizes moved off the lattice by float rounding, such as float32 data, or
      by tiny noise), and moves the pool of a set of at most `most` flips (the most a set
      within the loss can have, as in 3d) down by at most E- and up by at most E+, the sums
      of the `most` largest such moves of each sign. The table over the rounded flips (the
      ranges of 3d; of bits when every flip is free) gives every reachable lattice point's
      cheapest cost; a set reaching a point has its pool within [-E-, E+] of it and costs
      at least the point's cost (less tol / 4, the table's rounding up of costs), so no
      set's loss is below the least, over the points, of that cost plus L over that
      neighbourhood of the point (L is convex). The sets traced at the points of the least
      total and of the least bound (every flip free: the reachable points next to n0, below
      and above) are the candidates; when the best of them is within ``tol`` of that bound,
      it is optimal. Tried first off every lattice (after 3f), and before the flip search
      and 3j when a binary lattice is too fine for the tables (float32 sizes). A buyer
      among 120 sizes of 500 to 600 thousandths, each moved by 2e-13 to 1e-7 of itself,
      prices per sample tied, ran on for over a minute without it (over ten with 2e-13) and
      takes 2 ms; a round at m = 200 of such sizes stored in float32 takes about 0.25 s
      with prices per sample tied exactly (each buyer ran on for over 20 s before), and
      about 0.3 to 0.6 s with ties to 1e-9 to 1e-3 (4 to 5 s per buyer before with ties to
      1e-9 or 1e-6, 0.4 s with 1e-3).
   l. Sets by their number of sellers, for flips with costs: off every lattice after 3h
      when such sets have at most 4 numbers of sellers, in 3i after its first search with
      up to 16, and before 3j when a lattice is too fine for the tables. For the sets of k
      sellers and any slope mu < r, L(x) >= L(y) + mu (x - y) with L'(y) = mu (L is
      convex), and a set's flip costs are R's plus the sum over its sellers of c_j (w_j
      outside R, -w_j in R), so its loss is at least L(y) - mu (y - base) plus R's costs
      plus the sum of v_j = c_j + mu s_j over its sellers, least for the k sellers T of
      the least v_j. This Lagrangian bound is concave in mu; the tangents at the ends of a
      bracket meet above its peak, where the next mu is tried (or the middle, when the
      bracket did not halve), until within a thousandth of ``tol``. Where the relaxation of
      2 takes a fraction of a seller, this bound holds the number of sellers fixed, so it
      stays close to the best set when every set reaches n0 only through many flips or
      costly ones: in a band 1 % wide with prices per sample tied to 1e-9, the best sets of
      84 sellers flip about 60 and lose 1.2 to 1.5 tol, and the bound was within 0.25 tol
      of them. A set S of k exceeds the bound by at least the sum over T - S of (p - v_j)
      plus that over S - T of (v_j - p), p the largest v_j in T, every term >= 0, so only
      sets whose terms sum below the best state's loss less the bound can win. They are
      listed by the number of sellers swapped: each side's subsets by ascending term (a
      range of sellers extends each, so the work is that of the subsets listed; the side
      with fewer sellers that fit first, the other only to as many swaps), and paired by
      their terms. Single swaps go first for every k, and their best narrows the rest;
      with at most 2^18 subsets on a side and 2^18 pairs, the best of them is the best
      set. In the markets measured a handful of sellers could be swapped and a buyer took
      a few ms: a round at m = 200 in a band 1 % wide with ties to 1e-9, 1e-8, 1e-7 or
      1e-6 takes about 0.35 to 0.5 s (9 s, 50 s and 280 s before for the first three),
      and in a band 10 % wide with ties to 1e-4 (best sets of 16 or 17 sellers) about
      0.35 s (4.8 s before); sizes in float32 with ties to 1e-2 about 0.4 s (2.4 s).
   m. Sizes of two scales, after 3l in 3i and before 3j on a lattice too fine for the
      tables: where a size is 16 or more times the next smaller one, the sellers above that
      gap (coarse) and below it (fine) are split, at the gap that leaves the fewest numbers
      of coarse sellers a winning set can hold (at most 16). A set of coarse sellers C of
      pool y loses at least its flip costs plus h(y), the continuous relaxation of 2 for
      the fine sellers added to y: the least of L(y + x) plus the cheapest cost of x
      samples of them, fractions allowed (sellers by ascending cost per sample, each taken
      whole while L' at the pool with it stays at or below minus its cost per sample; a
      bisection finds that count for every y at once). h is convex, with slope L' where the
      relaxation fills to, so the Lagrangian bound of 3l holds with h in place of L: for
      each number k of coarse sellers and each z, every such set loses at least h(z) + h'(z)
      (y - z) plus its costs, least for the k sellers T of the least c_j + h'(z) s_j; the
      best z lies where T's pool passes z (grids of 32 points, three rounds). When the
      pairs of numbers of coarse and of fine sellers that a winning set can have number at
      most 16 (the fine sellers in a narrow band too, so that their pools cluster by
      number), each pair gets the bound of 3l over both groups at once (the kc least v_j of
      the coarse sellers and the kf least of the fine ones), which sees the gaps between
      those clusters that the relaxation fills; it bounds the coarse sets of that pair,
      and a coarse set is solved once, whatever pairs list it. The pairs go by ascending
      floor (L at the point nearest n0 of the pools the pair's sets reach, plus their least
      costs): the set T of the lowest is solved first, and a pair whose floor cannot beat
      the best set by more than ``tol`` gets no bound (with ties to 1e-6 in the close bands
      below, 40 buyers needed 102 such bounds rather than 236). With every flip free and the
      fine sellers in one band (no gap of 16 among them), only the pool matters, and for
      each such pair (kc, kf) the step first tries the kc coarse sellers consecutive by size
      whose pool leaves n0 nearest the middle of the pools that kf fine sellers reach on top
      of it (deepest inside first), with the kf fine sellers nearest the mean size they
      need, polished (the best toggles of up to four of the 32 either side of the kf-th): a
      set within ``tol`` of the relaxation ends the step, since nothing can beat it by more.
      With bands 1 % wide near 10^3 and 3 * 10^4 and prices per sample tied exactly, the
      bounds by pairs left up to 180,000 sets of swaps per buyer to list against a poor best
      set and a round at m = 200 took 13 to 15 s; a centred set settles every buyer that
      reaches the step (193 of 200), and a round takes about 0.3 s. The fine sellers are
      solved exactly on top of each T, the lowest bound first (this solver, with T's pool as
      their base: fewer sellers, a narrower range of sizes; T's value is often its bound,
      and with ties to 1e-6 in those bands, taken in turn they needed 180 solves for 40
      buyers and by ascending bound 62), then on top of the sets that swap one seller of T,
      then two, then any number, each listed as in 3l where it can beat the best set so far
      by more than ``tol`` and taken by ascending bound; at most 64 solves and 2^18 sets
      listed, else the step declines (at once when one or two swaps list too many even
      within a 256th of the slack: more swaps would list more). A listed set's bound is the
      most of the dual's tangent, h, and a floor by numbers: kf fine sellers on top of pool
      y reach a pool between y plus the kf smallest and the kf largest sizes, and cost at
      least their kf least c_j, so the set loses at least L at the point of that range
      nearest n0 plus those costs, least over the kf whose range meets the winning pools (a
      set of another kf cannot win). It sees the gaps between the clusters of pools that h
      fills: with bands 1 % wide near 10^3 and 3 * 10^4 and K a hundred times larger than
      below, a buyer needs 10 solves instead of 56. The two on top of the pool are computed
      only for the sets the tangent leaves. Reals in bands near 10^2, 10^4 and 10^6 with
      prices per sample tied to 1e-6: the best sets hold about three sellers near 10^4 and
      must reach n0 within a fraction of a sample, which the sellers near 10^2 (tens of
      ``tol`` each) do in many ways; the rounded tables closed one side slowly and left a
      buyer to the flip search, which ran on for over 40 s, and 3m takes about 0.02 s. Reals
      in bands 1 % wide near 10^3 and 3 * 10^4 with ties to 1e-6: n0 is reached only with
      some pairs of numbers, the relaxation's bound stayed about 10^5 tol below the best set
      and the flip search ran on for over a minute; the bounds by pairs settle such a buyer
      in about 0.02 s. Integers near 10^3 and 10^6, ties to 1e-6: buyers near 10^6 took 0.1
      to 1 s in 3j and the tables, and 3m settles them in a few ms, once single and double
      swaps (within a sixteenth or a 256th of the slack, where the full listing would be too
      long) have lowered the best set enough to list the rest.

``tol`` is 1e-11 times the magnitude of the objective's terms (sqrt(K / n_own) plus the
relaxation's spend), a few thousand times float64 rounding in evaluating V, so the result
equals a brute-force search up to rounding. Flip costs within rounding of zero count as
exact ties, and so do all when together they cost at most tol / 4 (the set found is then
within 1.25 tol of the best).

Why it is fast on ties. Equal or nearly equal prices per sample (prices proportional to
sizes) make the relaxation's bound nearly attainable by many sets; pruning then needs a
state within ``tol`` of it, a subset-sum search. A meet-in-the-middle search over the
cheapest flips (2^20 combinations from two sorted lists of 2^10) supplies a good state
first, or else a greedy fill of the gap between R's pool and n0, cheapest per sample first
(with sizes of many magnitudes, the cheapest flips alone cannot close it). When exact ties
keep the search growing, further meet-in-the-middle searches (subsets of 12 tied sellers of
spread sizes against all pairs of up to 120 others) and a local search (the best toggle of
up to four sellers) look for a state within ``tol``, after which everything is pruned; with
lattice sizes the rounded bound is attained exactly. On a lattice, exact ties go to the
tables of bits (3e) and near ties to the flip table (3d); exact ties on integral sizes with
a few others go to 3f, near a decimal lattice to 3k (near ties too), and on no lattice to
3g (near ties to 3h and 3l), and what those leave on no lattice to the rounded tables (3i),
which try 3m after a short search, then 3l and 3m again after a longer one (on a lattice
too fine for the tables, 3m goes after 3l, before 3j). The
problem contains subset sum (with all prices per sample equal, the best set is the one
whose total size comes closest to the relaxation's pool), so no exact method is fast on
every input. The slowest known inputs are sizes in a narrow band (all within 10 % of each
other) with prices per sample tied to within 1e-12 to 1e-3: about 2 to 4 ms per buyer for
integer sizes (under a second per round at m = 200), and about 2 to 5 ms when a tenth of
them are 1.3 times an integer (tables on the lattice of 0.1, the integral sizes first on
theirs). Sizes of that kind on no decimal lattice have no exact table: when n0 lies near
the least or the most that the best sets' number of sellers can reach, 3h settles a buyer
within about 0.1 s (a round at m = 200 took 0.3 to 2 s, where the flip search alone took 50
to 95 s); otherwise 3l settles buyers with near ties in a few ms (see there; rounds at
m = 200 of 0.35 to 0.5 s, where the rounded tables of 3i, with the local search polishing
their sets, took 5 s to almost 5 minutes). The rounded tables settle what 3l leaves, most
buyers within 0.1 s but some in up to about 3 s (bands 0.2 % to 1 % wide, best sets of 50
to 115 sellers, where many cheap flips make the rounding error of a set large), where the
flip search alone took minutes.
Integer sizes spread over four to eight orders of magnitude with prices per sample tied to
about 1e-3 (a posted price with a small heterogeneity charge, every model offered, 8 to 200
imports per buyer on average): a round at m = 200 takes 0.01 to 0.7 s, no buyer over 0.02 s
(before the child with the higher bound went first, such rounds took 1.6 to 45 s, and over
150 s before 3j); about 0.1 to 0.2 s when only models of 10^5 samples or more are offered. A
buyer of 10^4 samples among 199 sellers of 1 to 10^8 samples, prices per sample tied to 1e-6
to 1e-2, takes a few ms (up to 0.3 s before, over 20 s before 3j). Sizes in two narrow bands
three magnitudes apart (about 10^3 and 10^6) with prices per sample tied to 1e-6 or 1e-4 are
harder (the search largest first does not settle them, and is skipped; 3m does): a round at
m = 200 takes about 1.0 to 1.3 s with ties to 1e-6 and 0.7 s with 1e-4 (46 s and 20 s
before 3m, 2.0 s and 1.4 to 2.0 s with 3j's 1024 failing nodes per buyer first). Reals in
three bands near 10^2, 10^4 and 10^6 with ties to 1e-6: about 1.0 to 1.3 s for a round at
m = 200 (2.5 s with 3m after 2^16 states of the search, and one buyer ran on for over 40 s
before 3m), mostly in the solves of the sellers near 10^2 (a band 10 % wide with near ties,
about 1.5 ms each, a few per buyer); reals in bands 1 % wide near 10^3 and 3 * 10^4 with
ties to 1e-9 or 1e-6 about 0.9 to 1.1 s (2.6 s so, 2.0 to 2.3 s with the sets T solved in
turn rather than by ascending bound, and a buyer ran on for over a minute before). With
prices per sample tied exactly, 3m's centred sets settle such buyers at once: a round takes
about 0.3 s in those close bands (13 to 15 s before, a median of 88 ms per buyer, in the
flip search's polishing and in 3m's listings) and 0.45 to 0.5 s in the three bands (2.3 s,
and 5.2 s with bands 1 % wide). Over 80 markets of two or three bands near 10 to 10^6, 1 %
or 10 % wide, with exact ties or ties to 1e-9, 1e-6 or 1e-3, of reals or integers, a round
at m = 200 took 0.07 to 2.0 s (one run each), at most 0.91 s with exact ties; of the 16 over
a second, all but one had ties to 1e-9 or 1e-6. Exact ties on no lattice (3g): each of 1209
buyers with 199 sellers of sizes drawn from bands 0.2 % to 40 times wide took at most
0.03 s, and a round at m = 200 takes about 0.3 to 0.9 s in such bands (the flip search alone
takes up to 100 s, and over two minutes in some bands 1 % wide). Above 2^15 states the
search continues depth-first over halves, so memory stays bounded while the answer stays
exact.
"""

from __future__ import annotations

import bisect
import copy
import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

TOL_REL = 1e-11  # the tolerance, relative to the objective's magnitude
_NODES = 256  # depth-first work (nodes expanded) before the flip search takes over
_DEPTH_SHARE = 1 / 16384  # depth-first work (largest first) per cell of a large flip table
_WIDE = 1e3  # sizes spanning this much (largest over smallest) are taken largest first at once
_WIDE_FIRST = 1 << 10  # such sizes: depth-first work, largest first, before anything else
_BANDED = 16  # unless this many sizes lie on each side of a gap of _SCALES (bands)
_BLOCK = 16  # depths whose rows of the depth-first relaxation are built at once
_WALK = 4  # the depth-first relaxation walks this many sellers before it bisects a row
_OPEN = 8  # VCG: problems without a seller that step 1 leaves this few sellers are enumerated
_SHARED_CELLS = 1 << 25  # VCG: largest flip table shared by a buyer's problems without a seller
_SHARED_SCAN = 1 << 20  # and most pools of those problems it scans (final pools x problems)
_NEAR, _TIES = 1e-3, 16  # this many sellers within 0.1 % of the relaxation's price: flips
_HALF = 10  # sellers per side of the first meet-in-the-middle search
_TIED_LEFT, _PAIRED, _ATTEMPTS = 12, 120, 4  # ties: 12 sellers' subsets against pairs of 120
_BATCH, _BATCH_BITS = 4096, 10  # states per expansion step, sellers per step
_STATES = 1 << 15  # above this many states the search goes depth-first over halves
_HARD, _HARD_GROWTH = 1 << 11, 2  # ties: look for a better state at 2^11, 2^12, ... states
_POLISH_ROUNDS = 4  # rounds of the local search
_REPLACEMENTS = 4  # toggles either side of a member's size tried in its place
_GOLDEN = 0.6180339887498949  # spreads the tied sellers picked by successive attempts
_DISTINCT, _COMBINATIONS = 4, 1 << 15  # few sizes: at most 4, this many count combinations
_CELLS = 1 << 28  # largest flip table (flippable sellers x pool changes in lattice units)
_SMALL_CELLS = 1 << 21  # flip tables this small go before the flip search
_NEAR_CELLS = 1 << 19  # a table of alternating flips this small supplies the first state
_LOOSE_CELLS = 1 << 22  # larger flip tables record their choices packed, one bit per cell
_CACHED_BYTES = 1 << 20  # and update a flip's cells at once when they take at most this,
_BLOCK_BYTES = 1 << 18  # else in blocks of this many bytes (a multiple of 8 cells)
_SEARCH_SHARE = 1 / 256  # flip-search states per table cell before the table takes over
_CHEAP_COSTS = 1 << 8  # a large table's flips that together cost at most this many tol
_CHEAP_FIRST = 1 << 10  # go to the flip search for this many states first
# (a state takes about as long as 250 flip-table cells)
_BITS = 1 << 28  # largest table of free flips (one bit per cell)
_BIT_GAIN = 16  # a bit-table cell takes 1/16 of the time of a flip-table cell
_QUICK_BITS = 1 << 23  # tables of free flips this small go before the flip search
_SPAN = 2  # the table of alternating flips reaches this many largest flips beyond its ends
_NEAR_FLIPS = 64  # the cheapest flips in that table
_NARROW_GAIN = 4  # that table goes first when the full one has this many times its cells
_OFF_LATTICE, _PAIRS = 32, 1 << 16  # free flips off the others' lattice: at most 32, and
# at most this many of their sets paired one by one
_OFF_STATES = 16  # search states per seller before the free flips off the lattice are tried
_NEAR_SHARE = 1 / 8  # step 3k: rounding onto its lattice moves all pools by at most this share
_AT_ONCE = 2  # their sets are paired at once when at most this many times a half's subsets
_CHUNK = 8192  # else, sets paired by the bound are tried this many at a time
_SNAP = 2.0**-44  # sizes this close (relative) to a decimal lattice are moved onto it
_WINDOW = 512  # flip tables first look for the best pool this many cells next to n0
_FEW_SETS = 1 << 16  # step 3g pairs lists of at most this many sets, over all set sizes,
_FEW_COUNTS = 4  # when sets of at most this many numbers of sellers can beat the search
_GUESS_SETS = (1 << 12, 1 << 14, 1 << 16)  # else lists this long supply good sets in turn,
_GUESS_MOST = 64  # sets of at most this many sellers
_CHECKS = 1 << 22  # 3g gives up when a check for shared sellers takes this many words
_PAIR_SHARE = 1 / 8  # flip-search states per set listed (3g, 3h) before the sets are paired
_LISTED_SETS = 1 << 18  # step 3h lists at most this many sets, over all set sizes
_DUAL_STEPS = 64  # step 3l: most steps on the slope
_DUAL_GAP = 1e-3  # and it stops when no slope can raise its bound by this many tol
_DUAL_COUNTS = 16  # step 3l bounds sets of at most this many numbers of sellers
_SCALES = 16  # step 3m: sizes split where one is this many times the next smaller
_DUAL_GRID, _DUAL_ROUNDS = 32, 3  # step 3m: grids of this many pools, at most this many
_SHARES = (1.0, 1 / 16, 1 / 256)  # 3m lists swaps of one or two sellers within these shares
# of the slack, the first that fits (they only lower the best set before the full listing)
_FINE_SOLVES = 64  # step 3m solves the sellers below the split at most this many times
_FLOOR_COUNTS = 16  # 3m's floor by numbers of fine sellers looks at most at this many
_FLOOR_CELLS = 1 << 20  # and at this many pools x numbers at a time
_EDGE = 32  # 3g polishes the set of the sellers nearest the mean size with this many either side
_REMEMBERED = 16  # sorted subset sums of halves of 3f kept for later buyers (up to 1 MB each)
_ROUNDED_UNITS = 1 << 10  # step 3i's first lattice: the largest flip moves this many units
_ROUNDED_TRACED = 8  # 3i offers the search the sets of this many pool changes per table
_FINER = 1 / 4  # 3i's next lattice is at least this fraction of the last
_ROUNDED_SHARE = 1 / 512  # flip-search states per cell of a round of 3i's tables, after it
_ROUNDED_CELLS = 1 << 30  # 3i's largest round of tables
_SQUEEZE = 1.25  # a round beyond it is tried once on lattices this much coarser than fit
_SLOPE_MOVE = 0.25  # 3i keeps a lattice once when the slope moves by more than this share
_SLOPE_GAP = 4  # and the side's gap exceeds this many tol
_ROUNDED_FIRST = 1 << 16  # flip-search states before 3i's first tables
_SCALES_FIRST = 1 << 10  # flip-search states before 3i tries 3m first
_POLISHED_COSTS = 1 << 12  # 3i polishes best states when all flips cost at most this many tol
_POLISHED_CELLS = 1 << 26  # and then also the set of the lowest bound of a table this large


def marginal(sqrt_k, n_before, size):
    """g(n_before + size) - g(n_before) for g(n) = -sqrt(K / n), free of cancellation."""
    sa = np.sqrt(n_before)
    sb = np.sqrt(n_before + size)
    return sqrt_k * size / (sa * sb * (sa + sb))


def best_set(sqrt_k: float, n_own: float, sizes: np.ndarray, prices: np.ndarray,
             floor: float = -np.inf) -> np.ndarray:
    """Bool mask of an optimal import set (inputs already validated: sizes > 0, finite
    prices, n_own > 0). Deterministic: the same input always gives the same set. `floor`,
    when given, is the value V of some import set the caller knows (it only speeds up the
    search: step 1's last rule settles more sellers)."""
    chosen = prices <= 0
    if sqrt_k == 0.0:
        return np.zeros(sizes.shape[0], dtype=bool)
    core = np.flatnonzero(~chosen)
    base = n_own + sizes[chosen].sum()
    while core.size:
        useful = marginal(sqrt_k, base, sizes[core]) > prices[core]
        core = core[useful]
        top = base + sizes[core].sum()
        sure = marginal(sqrt_k, top - sizes[core], sizes[core]) > prices[core]
        chosen[core[sure]] = True
        base += sizes[core[sure]].sum()
        core = core[~sure]
        if useful.all() and not sure.any():
            break
    if core.size:
        into, out = (mask[0] for mask in _settled(sqrt_k, float(base), sizes[core],
                                                  prices[core], floor + prices[chosen].sum()))
        chosen[core[into]] = True
        base += sizes[core[into]].sum()
        core = core[~(into | out)]
    if core.size:
        s, p = sizes[core], prices[core]
        picked = _few_sizes(sqrt_k, float(base), s, p)
        if picked is None and _wide(s) and not _banded(s):
            picked = _depth_first(sqrt_k, float(base), s, p, _WIDE_FIRST, True)
        if picked is None and _near_ties(sqrt_k, float(base), s, p) < _TIES:
            picked = _depth_first(sqrt_k, float(base), s, p, _NODES)
        if picked is None:
            picked = _solve_core(sqrt_k, float(base), s, p)
        chosen[core[picked]] = True
    return chosen


def _few_sizes(sqrt_k: float, base: float, sizes: np.ndarray,
               prices: np.ndarray) -> np.ndarray | None:
    """Step 3c of the module docstring: the exact answer when the sellers come in few
    distinct sizes, or None for more than _DISTINCT sizes or _COMBINATIONS combinations."""
    values, group = np.unique(sizes, return_inverse=True)
    if values.size > _DISTINCT:
        return None
    counts = np.bincount(group)
    last = int(np.argmax(counts))
    others = [g for g in range(values.size) if g != last]
    if np.prod(counts[others] + 1.0) > _COMBINATIONS:
        return None
    members = [np.flatnonzero(group == g) for g in range(values.size)]
    members = [idx[np.argsort(prices[idx], kind="stable")] for idx in members]
    pool, spent = np.array([base]), np.zeros(1)
    for g in others:
        taken = np.arange(counts[g] + 1)
        pool = (pool[:, None] + taken * values[g]).ravel()
        spent = (spent[:, None] + np.append(0.0, np.cumsum(prices[members[g]]))).ravel()
    size, ladder = values[last], prices[members[last]]
    low, high = np.zeros(pool.size, dtype=np.int64), np.full(pool.size, counts[last])
    while np.any(low < high):  # the last group's count: its k-th seller pays off while k <= it
        open_ = low < high
        mid = np.maximum((low + high + 1) // 2, 1)
        pays = marginal(sqrt_k, pool + (mid - 1) * size, size) > ladder[mid - 1]
        low = np.where(open_ & pays, mid, low)
        high = np.where(open_ & ~pays, mid - 1, high)
    spent += np.append(0.0, np.cumsum(ladder))[low]
    best = int(np.argmax(-sqrt_k / np.sqrt(pool + low * size) - spent))
    picked = np.zeros(sizes.size, dtype=bool)
    picked[members[last][: low[best]]] = True
    shape = [counts[g] + 1 for g in others]
    for g, k in zip(others, np.unravel_index(best, shape) if shape else (), strict=True):
        picked[members[g][:k]] = True
    return picked


def _near_ties(sqrt_k: float, base: float, sizes: np.ndarray, prices: np.ndarray) -> int:
    """How many sellers' prices per sample lie within _NEAR (relative) of the price per
    sample where the continuous relaxation stops: many of them defeat the depth-first
    bound."""
    q, order, _, taken = _relaxation(sqrt_k, base, sizes, prices)
    r = q[order[min(taken, q.size - 1)]]
    return int(np.count_nonzero(np.abs(q - r) <= _NEAR * r))


def _wide(sizes: np.ndarray) -> bool:
    """Whether the sizes span more than _WIDE (largest over smallest), where deciding the
    largest sellers first settles most buyers (3j)."""
    return bool(sizes.max() > _WIDE * sizes.min())


def _banded(sizes: np.ndarray) -> bool:
    """Whether _BANDED or more sizes lie on each side of a gap of _SCALES (bands of two
    scales), where 3j, deciding the coarse sellers one by one, settled no buyer."""
    below = (sizes[:, None] < _scale_gaps(sizes)).sum(axis=0)
    return bool(np.any(np.minimum(below, sizes.size - below) >= _BANDED))


def _relaxation(sqrt_k: float, base: float, sizes: np.ndarray, prices: np.ndarray):
    """The continuous relaxation's filling order: (prices per sample q, the sellers by
    ascending q, the pool after each of them, how many it takes fully). g' decreases and q
    increases along the order, so the sellers taken fully are a prefix."""
    q = prices / sizes
    order = np.argsort(q, kind="stable")
    pool = base + np.cumsum(sizes[order])
    return q, order, pool, int(np.count_nonzero(_slope(sqrt_k, pool) >= q[order]))


def _settled(sqrt_k: float, base: float, sizes: np.ndarray, prices: np.ndarray,
             floor: float | np.ndarray, dropped: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Step 1's last rule: masks of the sellers in and out of every optimum, one row per
    problem: the problem itself (`dropped` None) or the problem without each seller of
    `dropped` (that seller out). Where the continuous relaxation with a seller's decision
    turned around stays below a known set by more than tol / 4 (far above rounding), the
    seller keeps the relaxation's decision. The known sets: the relaxation's full sellers,
    those and the next one, and `floor` (per row), the value of a set the caller knows
    (pool base + its sizes, less its prices). None settles (but the sellers dropped) when
    all prices per sample lie within _NEAR of each other."""
    rows = 1 if dropped is None else dropped.size
    taken, settled = np.zeros((2, rows, sizes.size), dtype=bool)
    if not _tied(sizes, prices):
        taken, turned, known, spent = _turned_relaxations(sqrt_k, base, sizes, prices, dropped)
        margin = 0.25 * TOL_REL * (sqrt_k / math.sqrt(base) + spent)
        settled = turned < (np.maximum(floor, known) - margin)[:, None]
    if dropped is not None:
        settled[np.arange(rows), dropped] = True  # out: taken is False there
    return settled & taken, settled & ~taken


def _tied(sizes: np.ndarray, prices: np.ndarray) -> bool:
    """Whether all prices per sample lie within _NEAR of each other, where step 1's last
    rule settles few sellers."""
    q = prices / sizes
    return bool(q.max() <= (1 + _NEAR) * q.min())


def _turned_relaxations(sqrt_k: float, base: float, sizes: np.ndarray, prices: np.ndarray,
                        dropped: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The continuous relaxation of 2 redone, in closed form, with each seller's decision
    turned around, one row per problem (as in :func:`_settled`): (whether the relaxation
    takes each seller fully, the relaxation's value with that seller left out when it does
    and taken when it does not (-inf for the seller dropped), the better value of the sets
    of its full sellers with and without the next one, their spend). The seller dropped
    keeps its place in the order with size and price 0, which changes no relaxation."""
    q, order, after, _ = _relaxation(sqrt_k, base, sizes, prices)
    s, p, q = sizes[order], prices[order], q[order]
    count = s.size
    rank = np.arange(count)
    pool = np.append(base, after)[None]  # before each seller by q, and after all
    spent = np.append(0.0, np.cumsum(p))[None]
    at_slope = _pool_at_slope(sqrt_k, q)
    excess = after - at_slope  # increasing; the relaxation takes a seller fully while <= 0
    if dropped is not None:  # by rank: the seller dropped, and those after it
        at = np.argsort(order)[dropped][:, None]
        gone, past = rank == at, np.arange(count + 1) > at
        gone_size = s[at]
        pool, spent = pool - gone_size * past, spent - p[at] * past
        s, p = np.where(gone, 0.0, s), np.where(gone, 0.0, p)

    def reached(room):
        """Per row, how many sellers the relaxation takes fully with `room` more (a row's
        excess falls by the size dropped from that seller on)."""
        ahead = np.searchsorted(excess, room, side="right")
        if dropped is None:
            return ahead
        beyond = np.searchsorted(excess, room + gone_size, side="right") - at
        return np.minimum(ahead, at) + np.maximum(beyond, 0)

    full = reached(np.zeros((pool.shape[0], 1)))
    taken = rank < full
    # Turned around, the relaxation takes fully the sellers before `stop` (but the one
    # turned around), reaching pool `before` having spent `paid`, and then part of `stop`.
    later = reached(s)  # left out: s_j more room for later ones
    earlier = reached(-s)  # taken: s_j less for earlier ones
    first = earlier < rank
    stop = np.where(taken, later, np.where(first, earlier, rank + 1))
    row = np.arange(pool.shape[0])[:, None]
    before = pool[row, stop] + np.where(taken, -s, np.where(first, s, 0.0))
    paid = spent[row, stop] + np.where(taken, -p, np.where(first, p, 0.0))
    part = stop < count
    last = np.minimum(stop, count - 1)
    top = np.where(part, np.maximum(before, at_slope[last]), before)
    turned = -sqrt_k / np.sqrt(top) - paid - np.where(part, q[last] * (top - before), 0.0)
    if dropped is not None:
        taken[gone], turned[gone] = False, -np.inf
    inside, turned_back = np.empty_like(taken), np.empty_like(turned)
    inside[:, order], turned_back[:, order] = taken, turned
    ends = np.minimum(full + np.arange(2), count)
    known = (-sqrt_k / np.sqrt(pool[row, ends]) - spent[row, ends]).max(axis=1)
    return inside, turned_back, known, spent[row[:, 0], full[:, 0]]


def values_without(sqrt_k: float, n_own: float, sizes: np.ndarray, prices: np.ndarray,
                   members: np.ndarray, floors: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 1's last rule for the problems without each seller of `members` at once, given
    `floors` (optional, per member): the values G(S) - p_S of sets without it that the
    caller knows. Returns (values, into, open): per member, the best value of the import
    sets without it where the rule leaves at most _OPEN sellers undecided (every subset of
    those tried on top of the sellers settled in; NaN elsewhere, and for a member that is
    paid to be imported: it moves the base), and the masks (members.size, sizes.size) of
    the sellers in every best set without it and of those left undecided."""
    values = np.full(members.size, np.nan)
    free = prices <= 0
    others = np.arange(sizes.size) != members[:, None]
    into, open_ = others & free, others & ~free
    rows = np.flatnonzero(~free[members])
    x_free, paid_free = float(sizes[free].sum()), float(prices[free].sum())
    s, p = sizes[~free], prices[~free]
    if sqrt_k == 0.0 or not rows.size or s.size > _OPEN + 1 and _tied(s, p):
        return values, into, open_  # none settles (with ties), too many to enumerate
    dropped = (np.cumsum(~free) - 1)[members[rows]]
    known = -np.inf if floors is None else floors[rows] - sqrt_k / math.sqrt(n_own) + paid_free
    with np.errstate(divide="ignore", over="ignore"):  # q near 0: taken fully at any pool
        taken, out = _settled(sqrt_k, n_own + x_free, s, p, known, dropped)
    undecided = ~(taken | out)
    if rows.size == members.size:  # (no member is free: whole rows)
        into[:, ~free], open_[:, ~free] = taken, undecided
    else:
        into[rows[:, None], np.flatnonzero(~free)] = taken
        open_[rows[:, None], np.flatnonzero(~free)] = undecided
    few = np.flatnonzero(undecided.sum(axis=1) <= _OPEN)
    if not few.size:
        return values, into, open_
    undecided, taken = undecided[few], taken[few]
    width = int(undecided.sum(axis=1).max())
    picked = np.argsort(~undecided, axis=1, kind="stable")[:, :width]  # undecided first
    tried = np.take_along_axis(undecided, picked, axis=1)
    subsets = ((np.arange(1 << width)[:, None] >> np.arange(width)) & 1).astype(np.float64)
    x = x_free + (taken @ s)[:, None] + np.where(tried, s[picked], 0.0) @ subsets.T
    paid = paid_free + (taken @ p)[:, None] + np.where(tried, p[picked], 0.0) @ subsets.T
    values[rows[few]] = (marginal(sqrt_k, n_own, x) - paid).max(axis=1)
    return values, into, open_


def table_values_without(sqrt_k: float, n_own: float, sizes: np.ndarray, prices: np.ndarray,
                         members: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """For each seller j of `members`, the best value G(S) - p_S of the import sets without
    it, from one flip table (3d) over all sellers shared by those problems, or NaN. With
    the relaxation of 2 taking j fully, a set without j flips j and others F: its loss is
    w_j plus L at pool n_r - s_j + x_F plus F's costs, so the table of the cheapest F for
    every pool change x_F gives each problem a bound, whichever F hold j too, and the set
    of its least total is best when it does not hold j. `floors` (per member): the values
    of sets known without it, which bound what the table must hold. Sizes off every binary
    lattice but near a decimal one are moved onto it, as in 3f. NaN where the sizes lie on
    no lattice, the table is too large, the relaxation does not take j fully, or the set
    traced holds j."""
    values = np.full(members.size, np.nan)
    free = prices <= 0
    s, p = sizes[~free], prices[~free]
    step = _lattice(s) if s.size else 0.0
    snap = _decimal_lattice(s) if s.size and not step else 0.0
    if sqrt_k == 0.0 or not (step or snap):
        return values
    x_free, paid_free = float(sizes[free].sum()), float(prices[free].sum())
    if snap:  # onto a decimal lattice, as in 3f: pools move by less than 2^-44 of themselves
        core, step = _Core(sqrt_k, n_own + x_free, np.rint(s / snap) * snap, p, _SNAP), snap
    else:
        core = _Core(sqrt_k, n_own + x_free, s, p)
    core.step = step
    index = np.cumsum(~free) - 1
    relaxed = (float(core.loss(core.n_r)) - sqrt_k / math.sqrt(core.n_r)
               - p[core.in_r].sum() - paid_free)  # U = V(R) + L(n_r): no set is worth more
    at = index[members]
    budgets = relaxed - (floors - sqrt_k / math.sqrt(n_own)) - core.w[at]
    rows = np.flatnonzero(~free[members] & core.in_r[np.maximum(at, 0)]
                          & np.isfinite(budgets) & (budgets >= 0))
    if not rows.size:
        return values
    budget = float(budgets[rows].max()) + core.tol
    shifts = float(s[at[rows]].min()), float(s[at[rows]].max())
    low, high = _pools_within(core, budget, core.base, core.n0 + float(s.sum()))
    first = int(np.floor((low - core.n_r) / step)) - 1
    width = int(np.ceil((high - core.n_r) / step)) + 1 - first  # each problem's final pools
    if rows.size * (width + 1) > _SHARED_SCAN:
        return values
    plan = _ranged(core, budget, pools=(core.base + shifts[1], np.inf), shifts=shifts)
    if plan.cells > _SHARED_CELLS:
        return values
    table = _filled(core, plan, exact=True)
    cells = (first + np.rint(s[at[rows]] / step).astype(np.int64)[:, None]
             + np.arange(width + 1) - table.start)
    cells = np.clip(cells, table.ends[0], table.ends[1])
    cost = table.cheapest[cells]
    pools = core.n_r + (cells + table.start) * step - s[at[rows]][:, None]
    with np.errstate(invalid="ignore", divide="ignore"):  # pools <= 0: never reached
        total = np.where((cost < table.top) & (pools > 0),
                         cost * table.unit + core.loss(pools), np.inf)
    picked = np.argmin(total, axis=1)
    reached = np.isfinite(total[np.arange(rows.size), picked])
    rows, cells = rows[reached], cells[np.arange(rows.size), picked][reached]
    chosen = core.in_r ^ _table_traces(table, cells, s.size)
    dropped = np.arange(rows.size), at[rows]
    fits = chosen[dropped]  # F leaves the seller dropped in R: flipping it too is allowed
    chosen[dropped] = False
    values[rows[fits]] = (marginal(sqrt_k, n_own, x_free + chosen[fits] @ s)
                          - paid_free - chosen[fits] @ p)
    return values


class _Relaxation:
    """The continuous relaxation of the sellers not yet decided, at every depth of a
    depth-first search over the sellers in a given order (their sizes and prices in that
    order): at depth k, those from k on. Over the sellers by ascending price per sample q
    (those decided counting with size and price 0), `summed` and `paid` sum their sizes and
    prices, and `reach` is `summed` less the pool where g' falls to q (for a decided one,
    the reach of the one before it). Rows are built for _BLOCK depths at once, from the
    first seller by q that one of them has not decided."""

    def __init__(self, sqrt_k: float, sizes: np.ndarray, prices: np.ndarray):
        q = prices / sizes
        self.depth = np.argsort(q, kind="stable")  # rank by q -> depth
        rank = np.argsort(self.depth)
        self.rank = rank.tolist()  # depth -> rank by q
        self.first = np.minimum.accumulate(np.append(rank, rank.size)[::-1])[::-1].tolist()
        self.sqrt_k = sqrt_k
        self.size, self.price, q = sizes[self.depth], prices[self.depth], q[self.depth]
        self.size_list, self.price_list = self.size.tolist(), self.price.tolist()
        self.ratio, self.depth_list = q.tolist(), self.depth.tolist()
        self.at_slope = _pool_at_slope(sqrt_k, q)
        self.pools = self.at_slope.tolist()
        self.blocks: dict[int, tuple[np.ndarray, ...]] = {}  # k // _BLOCK -> summed, paid, reach
        self.reaches: dict[int, list[float]] = {}  # depth -> its row of reach

    def _reach(self, k: int, whole: bool) -> list[float]:
        """Depth k's row of reach, 2 _BLOCK entries or, when `whole`, all of them, building
        that much of the rows of its block of depths first."""
        block = k // _BLOCK
        start = self.first[block * _BLOCK]
        stop = len(self.pools) if whole else min(start + 2 * _BLOCK, len(self.pools))
        if block not in self.blocks or self.blocks[block][0].shape[1] < stop - start:
            depths = np.arange(block * _BLOCK, min(block * _BLOCK + _BLOCK, self.size.size + 1))
            left = self.depth[start:stop] >= depths[:, None]
            summed = np.cumsum(np.where(left, self.size[start:stop], 0.0), axis=1)
            paid = np.cumsum(np.where(left, self.price[start:stop], 0.0), axis=1)
            reach = np.where(left, summed - self.at_slope[start:stop], -np.inf)
            self.blocks[block] = summed, paid, np.maximum.accumulate(reach, axis=1)
        self.reaches[k] = self.blocks[block][2][k % _BLOCK, : stop - start].tolist()
        return self.reaches[k]

    def fill(self, k: int, n: float, spent: float) -> tuple[float, float, int]:
        """The pool and the spend of the relaxation at depth k from pool n after spending
        `spent`, and the rank by q of the seller it stops at (the number of sellers when it
        takes all), in closed form. It takes the sellers not yet decided by ascending q,
        each fully while n plus the sizes up to it stays within the pool where g' falls to
        its q, i.e. while its reach is at most -n; reach increases along the order, so those
        sellers are a prefix. It walks the first _WALK sellers by q, and when they all fit,
        finds the prefix by bisection (in the first 2 _BLOCK entries of the row, and in the
        whole row when it takes them all). The next one is taken in part, up to its pool."""
        taken, end = self.first[k], min(self.first[k] + _WALK, len(self.pools))
        walked = n, spent
        while taken < end:
            if self.depth_list[taken] >= k:
                if n + self.size_list[taken] > self.pools[taken]:
                    break
                n, spent = n + self.size_list[taken], spent + self.price_list[taken]
            taken += 1
        if taken == end < len(self.pools):
            n, spent = walked
            start = self.first[k // _BLOCK * _BLOCK]
            reach = self.reaches.get(k) or self._reach(k, False)
            taken = bisect.bisect_right(reach, -n)
            if taken == len(reach) < len(self.pools) - start:
                taken = bisect.bisect_right(self._reach(k, True), -n)
            if taken:
                summed, paid, _ = self.blocks[k // _BLOCK]
                row = k % _BLOCK
                n, spent = n + summed.item(row, taken - 1), spent + paid.item(row, taken - 1)
            taken += start
        if taken < len(self.pools) and self.pools[taken] > n:
            spent += self.ratio[taken] * (self.pools[taken] - n)
            n = self.pools[taken]
        return n, spent, taken

    def bound(self, k: int, n: float, spent: float) -> tuple[float, int]:
        """The relaxation's value at depth k, pool n, after spending `spent`, and the rank
        it stops at."""
        top, cost, stop = self.fill(k, n, spent)
        return -self.sqrt_k / top**0.5 - cost, stop


def _depth_first(sqrt_k: float, base: float, sizes: np.ndarray, prices: np.ndarray,
                 budget: int, largest_first: bool = False) -> np.ndarray | None:
    """Steps 3a and 3j of the module docstring: depth-first branch-and-bound over the core
    sellers sorted by price per sample (3a) or by size, largest first (3j), bounded by the
    continuous relaxation of the sellers not yet decided; of a node's two children (the next
    seller in or out), the one with the higher bound goes first. A child whose seller the
    parent's relaxation took fully (in), or did not take (out), has the parent's relaxation.
    A node is dropped when its bound cannot beat the best set found by more than ``tol``.
    Returns the best set, or None when that would take more than `budget` nodes."""
    sqrt_k, base = float(sqrt_k), float(base)
    order = np.argsort(-sizes if largest_first else prices / sizes, kind="stable")
    relaxation = _Relaxation(sqrt_k, sizes[order], prices[order])
    bound, rank = relaxation.bound, relaxation.rank
    s, p = sizes[order].tolist(), prices[order].tolist()
    top, spent, stop = relaxation.fill(0, base, 0.0)
    tol = TOL_REL * (sqrt_k / base**0.5 + spent)
    # (bound, the rank its relaxation stops at, depth, pool, spent, the taken sellers' bits)
    stack = [(-sqrt_k / top**0.5 - spent, stop, 0, base, 0.0, 0)]
    n_items, best, best_bits, nodes = len(s), -sqrt_k / base**0.5, 0, 0
    while stack:
        high, stop, k, n, spent, bits = stack.pop()
        if high <= best + tol:
            continue
        nodes += 1
        if nodes > budget:
            return None
        val = -sqrt_k / n**0.5 - spent
        if val > best:
            best, best_bits = val, bits
        if k == n_items:
            continue
        out = (*((high, stop) if rank[k] > stop else bound(k + 1, n, spent)),
               k + 1, n, spent, bits)
        children = [out]
        if sqrt_k / n**0.5 - sqrt_k / (n + s[k]) ** 0.5 > p[k]:
            into = (*((high, stop) if rank[k] < stop else bound(k + 1, n + s[k], spent + p[k])),
                    k + 1, n + s[k], spent + p[k], bits | (1 << k))
            children = [out, into] if into[0] >= out[0] else [into, out]  # the last goes first
        stack.extend(child for child in children if child[0] > best + tol)
    picked = np.unpackbits(np.frombuffer(best_bits.to_bytes(n_items // 8 + 1, "little"),
                                         dtype=np.uint8), bitorder="little")[:n_items] == 1
    result = np.zeros(n_items, dtype=bool)
    result[order[picked]] = True
    return result


def _slope(sqrt_k: float, n):
    """g'(n) = sqrt(K) / (2 n^1.5)."""
    return 0.5 * sqrt_k * n**-1.5


def _pool_at_slope(sqrt_k: float, slope):
    """The pool n with g'(n) = slope (slope > 0)."""
    return (0.5 * sqrt_k / slope) ** (2.0 / 3.0)


def _decimal_lattice(sizes: np.ndarray) -> float:
    """The largest g = (integer) / 10^k, k <= 3, such that every size lies within _SNAP
    (relative) of a multiple of g, or 0: data sizes reported as a decimal multiple of the
    true ones (1.3 times, say) are multiples of 0.1 up to float rounding. Snapped onto g,
    every pool moves by less than _SNAP of itself, which changes V far less than ``tol``."""
    for k in range(1, 4):
        units = sizes * 10.0**k
        near = np.rint(units)
        if np.all(np.abs(units - near) <= _SNAP * units) and near.sum() < 2.0**52:
            return float(np.gcd.reduce(near.astype(np.int64))) / 10.0**k
    return 0.0


def _lattice(sizes: np.ndarray) -> float:
    """The largest g such that every size is a multiple of g (sizes are binary fractions,
    so g = gcd / 2^bits exactly), or 0 when the sums of sizes in units of g would not be
    exact in float64 (then the pools are treated as continuous)."""
    mantissa, exponent = np.frexp(sizes)
    digits = (mantissa * 2.0**53).astype(np.int64)
    low_bit = digits & -digits
    bits = int(np.max(53 - exponent - np.log2(low_bit).astype(np.int64)))
    bits = max(bits, 0)
    units = sizes * 2.0**bits
    if units.sum() >= 2.0**52:
        return 0.0
    return float(np.gcd.reduce(units.astype(np.int64))) / 2.0**bits


class _Core:
    """Step 2 of the module docstring: the relaxation, the flips and the loss L."""

    def __init__(self, sqrt_k: float, base: float, s: np.ndarray, p: np.ndarray,
                 snapped: float = 0.0):
        self.sqrt_k, self.base = sqrt_k, base  # base: the pool without any core seller
        q, order, pool, b = _relaxation(sqrt_k, base, s, p)
        self.n_r = float(pool[b - 1]) if b else base  # the pool of R
        n0, r = self.n_r, float(_slope(sqrt_k, self.n_r))
        if b < s.size:
            n_star = float(_pool_at_slope(sqrt_k, q[order[b]]))
            if n_star > self.n_r:
                n0, r = n_star, float(q[order[b]])
        self.n0, self.r, self.root_n0 = n0, r, float(np.sqrt(n0))
        self.in_r = np.zeros(s.size, dtype=bool)
        self.in_r[order[:b]] = True
        self.size, self.price = s, p
        self.move = np.where(self.in_r, -s, s)  # pool change of a flip
        w = np.where(self.in_r, -1.0, 1.0) * (p - r * s)
        self.tol = TOL_REL * float(sqrt_k / np.sqrt(base) + p[self.in_r].sum())
        # a flip cost within rounding of p - r s (and of snapping the sizes, by `snapped`
        # relative) is an exact tie: zero; so are all when together they cost tol / 4 or less
        w = np.where(w > (16 * np.finfo(float).eps + snapped) * (p + r * s), w, 0.0)
        self.w = w if w.sum() > self.tol / 4 else np.zeros_like(w)
        self.rho = self.w / s
        self.step = 0.0  # the size lattice, set by the flip search (which uses it)
        self.rounding = np.rint  # how pool changes go onto it (step 3i: down or up)
        self.integral = s == np.floor(s)  # sizes on the integers (step 3f handles the others)
        self.odd = int(np.count_nonzero(~self.integral))
        self.declined: set[tuple[str, float]] = set()  # (step 3l or 3m, loss): see decline

    def decline(self, step: str, loss: float) -> None:
        """Record that `step` ("3l" or "3m") declined at `loss` (too many sets or solves):
        at the same loss it would again, so it declines at once."""
        self.declined.add((step, loss))

    def rounded(self, step: float, rounding) -> _Core:
        """A copy whose flip tables round each pool change down or up (`rounding`: np.floor
        or np.ceil) to a multiple of `step` (the sizes lie on no lattice), all flips on that
        one lattice."""
        copied = copy.copy(self)
        copied.step, copied.rounding, copied.odd = step, rounding, 0
        copied.declined = set()
        return copied

    def below_n0(self) -> int:
        """The pool change, in lattice units, to the lattice point at or just below n0."""
        return int(np.floor((self.n0 - self.n_r) / self.step))

    def units(self, flips: np.ndarray) -> np.ndarray:
        """The pool changes of `flips` in lattice units."""
        return self.rounding(self.move[flips] / self.step).astype(np.int64)

    def pool(self, flips: np.ndarray) -> float:
        """The pool of the set R with `flips` (indices or a mask) flipped."""
        return self.n_r + float(self.move[flips].sum())

    def flip_loss(self, flips: np.ndarray) -> float:
        """The loss of the set R with `flips` flipped: L at its pool plus their costs."""
        return float(self.loss(self.pool(flips)) + self.w[flips].sum())

    def loss(self, n):
        """L at pool n: (n - n0) (r - mean slope of g over [n0, n]), >= 0."""
        sn, s0 = np.sqrt(n), self.root_n0
        return np.maximum((n - self.n0) * (self.r - self.sqrt_k / (sn * s0 * (sn + s0))), 0.0)

    def closest(self, n, low, high):
        """min of L over the pools n + t, t in [low, high] and a multiple of step (L is
        convex with its minimum at n0)."""
        t = np.minimum(np.maximum(self.n0 - n, low), high)
        if not self.step:
            return self.loss(n + t)
        below = np.maximum(np.floor(t / self.step) * self.step, low)
        return np.minimum(self.loss(n + below), self.loss(n + np.minimum(below + self.step, high)))

    def onward(self, n, tail: tuple[float, float, float, float], grow: bool):
        """Lower bound on the loss to come (flip costs included) for states at pool n that
        flip at least one more seller, all in one direction. `tail` = (least cost per
        sample, least cost per seller, smallest size, total size) of the sellers left in
        that direction: each flip costs at least the per-seller least, and the flips cost at
        least the per-sample least times the samples moved t, which lies between the
        smallest size and the total size (and on the size lattice)."""
        rho, flip, low, high = tail
        if not high:
            return np.inf
        sign = 1.0 if grow else -1.0
        per_seller = flip + (self.closest(n, low, high) if grow else self.closest(n, -high, -low))
        if grow:
            t = _pool_at_slope(self.sqrt_k, self.r + rho) - n
        elif self.r > rho:
            t = n - _pool_at_slope(self.sqrt_k, self.r - rho)
        else:
            t = low
        t = np.minimum(np.maximum(t, low), high)
        if not self.step:
            per_sample = self.loss(n + sign * t) + rho * t
        else:
            below = np.maximum(np.floor(t / self.step) * self.step, low)
            above = np.minimum(below + self.step, high)
            per_sample = np.minimum(
                self.loss(n + sign * below) + rho * below,
                self.loss(n + sign * above) + rho * above,
            )
        return np.maximum(per_seller, per_sample)


def _subset_sums(move: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool change and flip cost of every subset; bit i of the index flags item i."""
    total, cost = np.zeros(1), np.zeros(1)
    for dm, dw in zip(move.tolist(), w.tolist(), strict=True):
        total = np.concatenate([total, total + dm])
        cost = np.concatenate([cost, cost + dw])
    return total, cost


@functools.lru_cache(maxsize=4)
def _subset_members(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The members a, b of the empty set, the singletons and the pairs of n items ((k,) int
    rows; -1 for none); read-only, and remembered for the last few n."""
    i, j = np.triu_indices(n, 1)
    first = np.concatenate([[-1], np.arange(n), i])
    second = np.concatenate([np.full(n + 1, -1), j])
    first.flags.writeable = second.flags.writeable = False
    return first, second


def _small_subsets(move: np.ndarray, w: np.ndarray):
    """Pool change and flip cost of the empty set, the singletons and the pairs of items,
    and the members of each (see :func:`_subset_members`)."""
    first, second = _subset_members(move.size)
    move, w = np.append(move, 0.0), np.append(w, 0.0)  # index -1: no member
    return move[first] + move[second], w[first] + w[second], first, second


def replacement_values(sqrt_k: float, n_own: float, sizes: np.ndarray, prices: np.ndarray,
                       chosen: np.ndarray) -> np.ndarray:
    """For each member j of `chosen` (ascending j): the best value g(n_own + x_S) -
    g(n_own) - p_S of the sets S that drop j from `chosen` and toggle at most two other
    sellers, among the _REPLACEMENTS toggles either side whose pool change lies nearest
    j's size (-inf when none)."""
    sign = np.where(chosen, -1.0, 1.0)
    move, cost, first, second = _small_subsets(sign * sizes, sign * prices)
    order = np.argsort(move, kind="stable")
    move, cost, first, second = move[order], cost[order], first[order], second[order]
    members = np.flatnonzero(chosen)
    at = np.searchsorted(move, sizes[members])
    near = np.clip(at[:, None] + np.arange(-_REPLACEMENTS, _REPLACEMENTS), 0, move.size - 1)
    imported = sizes[chosen].sum() - sizes[members][:, None] + move[near]
    paid = prices[chosen].sum() - prices[members][:, None] + cost[near]
    twice = (first[near] == members[:, None]) | (second[near] == members[:, None])
    value = np.where(twice, -np.inf, marginal(sqrt_k, n_own, np.maximum(imported, 0.0)) - paid)
    return value.max(axis=1)


def _spread(core: _Core, tied: np.ndarray, count: int, phase: float) -> np.ndarray:
    """`count` of the free flips `tied`, as many shrinking the pool as growing it (when
    there are enough), at evenly spaced size ranks within each direction, offset by `phase`
    in [0, 1): subsets of sellers of varied sizes and both signs cover pool changes densely."""
    shrink = tied[core.move[tied] < 0]
    grow = tied[core.move[tied] > 0]
    n_shrink = min(shrink.size, max(count // 2, count - grow.size))
    picked = []
    for group, k in ((shrink, n_shrink), (grow, count - n_shrink)):
        by_size = group[np.argsort(np.abs(core.move[group]), kind="stable")]
        picked.append(by_size[((np.arange(k) + phase) * by_size.size / max(k, 1)).astype(int)])
    return np.concatenate(picked)


def _meet_in_middle(core: _Core, left: np.ndarray, right: np.ndarray, rest: np.ndarray,
                    pairs: bool) -> tuple[float, np.ndarray]:
    """A good state: flips of the sellers `left` (any subset) and `right` (any subset, or
    with `pairs` at most two of them), chosen by pairing the two lists of pool changes so
    that their sum comes closest to the relaxation's pool n0 (the four nearest partners of
    each left subset are compared by loss). When n0 lies outside the middle half of what the
    two lists reach, flips of the sellers `rest` first bring it there. Returns (loss,
    flipped sellers)."""
    move_l, cost_l = _subset_sums(core.move[left], core.w[left])
    if pairs:
        move_r, cost_r, first, second = _small_subsets(core.move[right], core.w[right])
    else:
        move_r, cost_r = _subset_sums(core.move[right], core.w[right])
    low, high = move_l.min() + move_r.min(), move_l.max() + move_r.max()
    need = core.n0 - core.n_r - 0.5 * (low + high)
    pre = []
    for item, step in zip(rest.tolist(), core.move[rest].tolist(), strict=True):
        if abs(need) <= 0.25 * (high - low):
            break
        if abs(need - step) < abs(need):
            pre.append(item)
            need -= step
    pre_arr = np.array(pre, dtype=np.int64)
    start = core.n_r + core.move[pre_arr].sum()
    by_move = np.argsort(move_r)
    move_r, cost_r = move_r[by_move], cost_r[by_move]
    at = np.searchsorted(move_r, core.n0 - start - move_l)
    near = np.clip(at[:, None] + np.arange(-1, 1), 0, move_r.size - 1)
    total = cost_l[:, None] + cost_r[near] + core.loss(start + move_l[:, None] + move_r[near])
    i, k = np.unravel_index(int(np.argmin(total)), total.shape)
    picked = [left[b] for b in range(left.size) if int(i) >> b & 1]
    code_r = int(by_move[near[i, k]])
    if pairs:
        picked += [right[x] for x in (first[code_r], second[code_r]) if x >= 0]
    else:
        picked += [right[b] for b in range(right.size) if code_r >> b & 1]
    flips = np.concatenate([pre_arr, np.array(picked, dtype=np.int64)])
    return float(total[i, k] + core.w[pre_arr].sum()), flips


def _greedy_fill(core: _Core, overshoot: bool) -> np.ndarray:
    """Flips that bring the pool from n_r to about n0, cheapest per sample first: growing
    flips that fit in the gap left; or (`overshoot`) growing flips until the pool passes
    n0, then shrinking flips that fit in the excess. With sizes of many magnitudes this
    lands close to n0 at close to the least cost per sample."""
    order = np.argsort(core.rho, kind="stable")
    move = core.move[order]
    gap, taken = core.n0 - core.n_r, []
    if overshoot:
        grow = order[move > 0]
        passed = int(np.searchsorted(np.cumsum(core.move[grow]), gap)) + 1
        taken = grow[:passed].tolist()
        gap -= float(core.move[grow[:passed]].sum())
    toward = -1.0 if overshoot else 1.0  # the direction that closes the gap left
    for item, step in zip(order.tolist(), move.tolist(), strict=True):
        if 0 < toward * step <= toward * gap:
            taken.append(item)
            gap -= step
    return np.sort(np.array(taken, dtype=np.int64))


def _polish(core: _Core, flips: np.ndarray, candidates: np.ndarray) -> tuple[float, np.ndarray]:
    """Improve a state by toggling up to four of the `candidates` (flip or unflip), the
    best combination of two lists of at most two toggles whose pool changes sum closest to
    what the state lacks; repeated while it helps. Returns (loss, flipped sellers)."""
    flipped = np.zeros(core.w.size, dtype=bool)
    flipped[flips] = True
    best = core.flip_loss(flipped)
    for _ in range(_POLISH_ROUNDS):
        sign = np.where(flipped[candidates], -1.0, 1.0)
        move, cost, first, second = _small_subsets(
            sign * core.move[candidates], sign * core.w[candidates]
        )
        order = np.argsort(move)
        move, cost, first, second = move[order], cost[order], first[order], second[order]
        pool = core.n_r + core.move[flipped].sum()
        W = float(np.sum(core.w[flipped]))
        # the partners' keys descend along `move`: searched ascending, they search faster
        above = np.searchsorted(move, (core.n0 - pool - move)[::-1])[::-1]
        near = np.stack([np.maximum(above - 1, 0), np.minimum(above, move.size - 1)], axis=1)
        after = np.maximum(pool + move[:, None] + move[near], core.base)  # (only clashes
        # toggle a seller twice and can end below the base; they are dropped next)
        total = (W + cost[:, None] + cost[near] + core.loss(after)).ravel()
        at = int(np.argmin(total))
        if _share_a_member(first, second, np.array([at // 2]), near.flat[[at]])[0]:
            better = np.flatnonzero(total < best)
            better = better[~_share_a_member(first, second, better // 2, near.flat[better])]
            if not better.size:
                break
            at = int(better[np.argmin(total[better])])
        if not total[at] < best:
            break
        best = float(total[at])
        for x in (first[at // 2], second[at // 2], first[near.flat[at]], second[near.flat[at]]):
            if x >= 0:
                flipped[candidates[x]] ^= True
        if best <= core.tol:
            break
    return best, np.flatnonzero(flipped)


def _share_a_member(first: np.ndarray, second: np.ndarray, i: np.ndarray,
                    j: np.ndarray) -> np.ndarray:
    """Whether the subsets i and j (rows of :func:`_small_subsets`) share an item."""
    a, b, c, d = first[i], second[i], first[j], second[j]
    return ((c == a) | (c == b)) & (c >= 0) | ((d == a) | (d == b)) & (d >= 0)


def _tails(core: _Core, seq: np.ndarray, grow: bool) -> list[tuple[float, float, float, float]]:
    """For every k, the `tail` argument of :meth:`_Core.onward` for the sellers seq[k:] that
    flip in direction `grow`: (least cost per sample, least flip cost, smallest size, total
    size); (inf, inf, inf, 0) when none is left."""

    def suffix_min(x):
        return np.append(np.minimum.accumulate(x[::-1])[::-1], np.inf)

    mine = core.move[seq] > 0 if grow else core.move[seq] < 0
    sizes = np.abs(core.move[seq])
    rho = suffix_min(np.where(mine, core.rho[seq], np.inf))
    flip = suffix_min(np.where(mine, core.w[seq], np.inf))
    least = suffix_min(np.where(mine, sizes, np.inf))
    room = np.append(np.cumsum(np.where(mine, sizes, 0.0)[::-1])[::-1], 0.0)
    return list(zip(rho.tolist(), flip.tolist(), least.tolist(), room.tolist(), strict=True))


class _OverBudget(Exception):
    """The flip search has used its budget."""


def _solve_core(sqrt_k: float, base: float, sizes: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Steps 3b, 3d, 3e and 3f of the module docstring: a mask over the core sellers. Sizes
    off every binary lattice but on a decimal one go to the flip tables on that lattice
    (with every flip free, when there are too many for 3f)."""
    core = _Core(sqrt_k, base, sizes, prices)
    core.step = _lattice(sizes)
    wanted = not core.step and (core.w.any() or core.odd > _OFF_LATTICE)
    snap = _decimal_lattice(sizes) if wanted else 0.0
    if snap:
        core = _Core(sqrt_k, base, np.rint(sizes / snap) * snap, prices, _SNAP)
        core.step = snap
    return _flipped(core, _flips(core))


def _flipped(core: _Core, flips: np.ndarray) -> np.ndarray:
    """The set R with `flips` flipped."""
    result = core.in_r.copy()
    result[flips] ^= True
    return result


def _flips(core: _Core) -> np.ndarray:
    """The flips of an optimal set: the flip tables on a size lattice (3d, 3e), the free
    flips off the lattice (3f, 3k, 3g), those with costs (3k, 3h, 3l), or else the rounded
    tables (3i)."""
    if core.step and not core.w.any():
        return _free_flips(core)
    if core.step:
        return _table_flips(core)
    search, found = _started_search(core), None
    if core.w.any():
        found = _near_lattice(core, search.best + core.tol)
        if found is None:
            found = _listed_members(core, search)
        if found is None:
            found = _count_sets(core, search.best, _FEW_COUNTS)
    else:
        if 0 < core.odd <= min(_OFF_LATTICE, core.w.size - 1):
            if search.attempt(core.w.size * _OFF_STATES):
                return search.best_flips
            found = _off_lattice(core, search.best)
        if found is None:
            found = _near_lattice(core, search.best)
        if found is None:
            found = _few_members(core, search)
    if found is not None:
        return _lower(found, search)
    return _rounded_flips(core, search)


def _lower(found: tuple[float, np.ndarray], search: _Search) -> np.ndarray:
    """The flips of `found` (loss, flips) or of the search's best state, whichever has the
    lower loss."""
    return found[1] if found[0] < search.best else search.best_flips


def _rounded_flips(core: _Core, search: _Search) -> np.ndarray:
    """Step 3i of the module docstring: for the sets with pools above n0 and those below it,
    flip tables over the sizes rounded down, or up, to ever finer lattices, until the
    search's best state is within ``tol`` of both lower bounds. Where a size is _SCALES
    times the next smaller one, the flip search goes first for _SCALES_FIRST states, then
    step 3m; when it declines (or there is no such gap), the search for _ROUNDED_FIRST
    states, then 3l (up to _DUAL_COUNTS numbers of sellers) and 3m again (each declines at
    once at a loss where it declined before); the search runs again, for a share of their
    cells, after a round of tables when that share is at least twice its last run (it may
    finish first), and without limit once the tables would exceed _ROUNDED_CELLS (the first
    time, after a round on lattices _SQUEEZE times coarser than would fit, when finer than
    each side's last). On a size lattice (flip tables too large for 3d), steps are whole
    multiples of it, and a side left open after a round on the lattice itself goes to the
    search without limit too. When all flips together cost at most _POLISHED_COSTS tol,
    each new best state is polished before the next round (the best toggles of up to four of
    the _PAIRED cheapest flips and its own, while they help), and so is the set of the
    lowest bound of a table of _POLISHED_CELLS or more."""
    found = None
    if _scale_gaps(core.size).size:
        if search.attempt(_SCALES_FIRST):
            return search.best_flips
        found = _two_scales(core, search.best)
    work = _ROUNDED_FIRST
    if found is None:
        if search.attempt(work):
            return search.best_flips
        found = _count_sets(core, search.best)
        if found is None:
            found = _two_scales(core, search.best)
    if found is not None:
        return _lower(found, search)
    sizes = np.abs(core.move)  # no flip rounds to 0:
    steps = [min(float(sizes.max()) / _ROUNDED_UNITS, float(sizes.min()))] * 2
    slopes, sides = [0.0, 0.0], [0, 1]  # sides open: sizes rounded down (0), up (1)
    redone = [True, True]  # the last round kept the lattice for a new slope
    lattice_rounds = [0, 0]  # rounds on the sizes' own lattice: a second one is the last
    windows = [(core.base, np.inf)] * 2  # the pools where a better set may lie
    polishing = core.w.sum() <= _POLISHED_COSTS * core.tol  # cheap flips: pools decide
    cheapest, polished = np.argsort(core.w, kind="stable")[:_PAIRED], np.inf
    last_steps, squeezed = [np.inf, np.inf], False  # each side's last lattice
    while sides:
        while polishing and search.best < polished:  # a new best state, until it stays
            polished = search.best  # toggles: the cheapest flips and the state's own
            toggles = np.union1d(cheapest, search.best_flips)
            search.offer(*_polish(core, search.best_flips, toggles))
        rounded = {i: core.rounded(_coarser(steps[i], core.step), (np.floor, np.ceil)[i])
                   for i in sides}
        plans = {i: _rounded_plan(rounded[i], search.best + core.tol, windows[i]) for i in sides}
        cells = sum(plan.cells for plan in plans.values())
        wider = {i: steps[i] * _SQUEEZE * cells / _ROUNDED_CELLS for i in sides}  # to fit
        if cells > _ROUNDED_CELLS and not squeezed and all(
                _coarser(wider[i], core.step) < last_steps[i] for i in sides):
            squeezed = True  # once: the finest lattices within _ROUNDED_CELLS
            steps = [wider.get(i, step) for i, step in enumerate(steps)]
            rounded = {i: core.rounded(_coarser(steps[i], core.step), (np.floor, np.ceil)[i])
                       for i in sides}
            plans = {i: _rounded_plan(rounded[i], search.best + core.tol, windows[i])
                     for i in sides}
            cells = sum(plan.cells for plan in plans.values())
        for i in sides:
            last_steps[i] = rounded[i].step
        finest = [i for i in sides if rounded[i].step == core.step]  # on the sizes' lattice
        last = [i for i in finest if lattice_rounds[i]]  # (exact but for float rounding)
        for i in finest:
            lattice_rounds[i] += 1
        if cells > _ROUNDED_CELLS or last:
            search.attempt(np.inf)
            return search.best_flips
        gaps = {}
        for i in sides:
            slope = slopes[i]
            bound, slopes[i], windows[i], lowest = _rounded_bound(rounded[i], plans[i], slope,
                                                                  search)
            if polishing and plans[i].cells >= _POLISHED_CELLS and lowest is not None:
                search.offer(*_polish(core, lowest, np.union1d(cheapest, lowest)))
            gaps[i] = search.best - bound
            # the bound's rounding: tol / 2 for the costs, the rest about step squared
            excess = max(gaps[i] - 0.5 * core.tol, core.tol)
            moved = abs(slopes[i] - slope) > _SLOPE_MOVE * abs(slopes[i])
            redone[i] = moved and not redone[i] and excess > _SLOPE_GAP * core.tol
            if not redone[i]:  # else a new slope may settle the side on the same lattice
                steps[i] *= min(max(math.sqrt(0.45 * core.tol / excess), _FINER), 0.5)
        sides = [i for i in sides if gaps[i] > core.tol]
        if sides and cells * _ROUNDED_SHARE >= 2 * work:
            work = cells * _ROUNDED_SHARE
            if search.attempt(work):
                break
    return search.best_flips


def _coarser(step: float, lattice: float) -> float:
    """`step` as a whole multiple of the sizes' `lattice` (0: none), so that the finest
    tables, on the lattice itself, round nothing."""
    return lattice * max(math.floor(step / lattice), 1) if lattice else step


def _rounded_plan(core: _Core, budget: float, pools: tuple[float, float]) -> _Plan:
    """The plan of the flip table over the sizes rounded to core.step, for sets of loss at
    most `budget` with their pools within `pools`: k flips move the rounded pool by less
    than k steps from the true one, so final pools are looked for plan.most + 1 steps
    beyond those where L <= budget."""
    slack, plan = 1, _ranged(core, budget, pools=pools)
    while slack < plan.most + 1:
        slack = plan.most + 1
        plan = _ranged(core, budget, slack=slack, pools=pools)
    return plan


def _rounded_bound(core: _Core, plan: _Plan, slope: float, search: _Search
                   ) -> tuple[float, float, tuple[float, float], np.ndarray | None]:
    """(a lower bound on the loss of every set whose pool lies above n0 when the sizes are
    rounded down to core.step, or below it when rounded up; L' at the best such set traced
    (0 if none), the next `slope`; the pools of the cells where the bound beats the best
    state; the set traced from the cell of the lowest bound, None if no cell), from their
    flip table. A set of k <= plan.most flips has its pool x + E in a table cell x, with E
    the sum of its flips' roundings e, up or down, at most k times the largest (less than a
    step, and none on the sizes' own lattice). A table whose flips add, besides their costs
    w, lambda e (lambda of the sign of e, so the sums stay >= 0) bounds the set's cost below
    by its cost in the table less lambda E and tol / 4 (see :func:`_cost_units`), and so its
    loss by that plus the least of L(x + E) - lambda E over such E (convex in E): tight for
    cells where L' is near lambda = `slope`. The cheapest sets of the _ROUNDED_TRACED cells
    with the lowest bounds are offered to the search."""
    up = core.rounding is np.floor
    settled = np.inf, slope, (core.n0, core.n0), None
    if plan.stop < plan.start:  # no set reaches the pools left
        return settled
    errors = core.move - core.units(np.arange(core.move.size)) * core.step
    table = _filled(core, plan, exact=True, w=core.w + slope * errors)
    widest = float(np.abs(errors[plan.items]).max(initial=0.0))  # 0 on the sizes' lattice
    at, x, low, high = _side_cells(core, table, plan.most * widest, up)
    if not at.size:
        return settled
    pool = np.clip(_pool_at_slope(core.sqrt_k, core.r - slope), low, high)
    bounds = (table.cheapest[at] * table.unit - core.tol / 4 + core.loss(pool)
              - slope * (pool - x))
    lowest = np.argsort(bounds, kind="stable")[:_ROUNDED_TRACED]
    best, slope, traced = np.inf, 0.0, [_table_trace(table, int(at[i])) for i in lowest]
    for flips in traced:
        moved, loss = core.pool(flips), core.flip_loss(flips)
        search.offer(loss, flips)
        if loss < best and (moved >= core.n0) == up:  # the next slope: L' at the best set
            best, slope = loss, float(core.r - _slope(core.sqrt_k, moved))
    beats = bounds < search.best - core.tol  # none: this side is settled
    window = (float(low[beats].min()), float(high[beats].max())) if beats.any() else settled[2]
    slope = max(slope, 0.0) if up else min(slope, 0.0)
    return float(bounds[lowest[0]]), slope, window, traced[0]


def _side_cells(core: _Core, table: _Table, most: float, up: bool) -> tuple[np.ndarray, ...]:
    """The reached cells of a table over sizes rounded down (`up`) or up that can hold a set
    whose pool lies above n0 (`up`) or below it: (their indices, their pools x, and the
    least and the most pool of such a set, which lies less than `most` above, or below,
    x, and not below the pool with every seller of R dropped)."""
    at = np.arange(table.ends[0], table.ends[1] + 1)
    at = at[table.cheapest[at] < table.top]
    x = core.n_r + (at + table.start) * core.step
    low = np.maximum(x if up else x - most, core.base)
    high = x + most if up else x
    side = (high >= core.n0 if up else low <= core.n0) & (low <= high)
    return at[side], x[side], low[side], high[side]


def _table_flips(core: _Core) -> np.ndarray:
    """Step 3d of the module docstring. A small table of alternating flips supplies the
    first state (else the meet-in-the-middle search does), and a small flip table decides at
    once. A larger one is narrowed by the best state's loss of the table of alternating
    flips when that has a fraction of its cells; one still large goes to the flip search for
    _CHEAP_FIRST states when its flips are cheap (:func:`_cheap_flips`), then to steps 3k,
    3l and 3m (sizes near a decimal lattice, sets by their number of sellers, two scales), to
    the depth-first search (3j) with a share of its work, then waits for the flip search,
    which hands over once it has taken about as long as the table would; one beyond _CELLS
    goes to the rounded tables (3i). The table of alternating flips goes before the search
    when it is small, else after it."""
    search = _Search(core)
    near = _alternating(core, search.best + core.tol, _NEAR_FLIPS)
    narrowed = near.cells <= _NEAR_CELLS
    if narrowed:
        search.offer(*_cost_table(core, near, exact=False))
    else:
        search.first_state()
    plan = _ranged(core, search.best + core.tol)
    gain = not narrowed and plan.cells > max(_SMALL_CELLS, _NARROW_GAIN * near.cells)
    early = near.cells <= _SMALL_CELLS  # a small table of alternating flips goes first
    if gain and early:
        plan = _narrowed(core, search, near, plan)
    if plan.cells > _SMALL_CELLS:
        if _cheap_flips(core) and search.attempt(_CHEAP_FIRST):
            return search.best_flips
        found = _near_lattice(core, search.best + core.tol)  # sizes in float32, say
        if found is None:
            found = _count_sets(core, search.best)
        if found is None:
            found = _two_scales(core, search.best)
        if found is not None:
            return _lower(found, search)
        flips = _depth_first_flips(core, int(plan.cells * _DEPTH_SHARE) if plan.cells <= _CELLS
                                   else _WIDE_FIRST)
        if flips is not None:
            return flips
        later = gain and not early and near.cells <= _CELLS  # narrowed after the search
        if plan.cells > _CELLS and not later:  # no table within reach: rounded ones (3i)
            return _rounded_flips(core, search)
        if search.attempt(min(plan.cells, near.cells) * _SEARCH_SHARE):
            return search.best_flips
        if later:
            plan = _narrowed(core, search, near, plan)
    if plan.cells <= _CELLS:
        return _cost_table(core, plan)[1]
    return _rounded_flips(core, search)


def _cheap_flips(core: _Core) -> bool:
    """Whether all flips together cost at most _CHEAP_COSTS tol, with no gap of _SCALES
    between sizes: the flip search then settles a large flip table's buyer in a few
    hundred states, where steps 3k to 3m and 3j took milliseconds."""
    return core.w.sum() <= _CHEAP_COSTS * core.tol and not _scale_gaps(core.size).size


def _depth_first_flips(core: _Core, budget: int) -> np.ndarray | None:
    """Step 3j before a large flip table, with `budget` nodes: the flips of the best set,
    or None when it does not settle."""
    settled = _depth_first(core.sqrt_k, core.base, core.size, core.price, budget, True)
    return None if settled is None else np.flatnonzero(settled != core.in_r)


def _narrowed(core: _Core, search: _Search, near: _Plan, plan: _Plan) -> _Plan:
    """`plan` narrowed by the loss of the best state of the table of alternating flips
    `near`, when that state beats the search's best."""
    if search.offer(*_cost_table(core, near, exact=False)):
        return _ranged(core, search.best + core.tol)
    return plan


def _free_flips(core: _Core) -> np.ndarray:
    """Step 3e of the module docstring, every flip free: tables of bits, the narrow one of
    alternating flips first (it decides when it reaches the best lattice point next to n0).
    When they are large, step 3k is tried, and then the flip search goes first with a share
    of their time; beyond _BITS cells, the rounded tables (3i) decide."""
    near = _alternating(core, 0.0, core.w.size, phased=False)
    quick = near.bits <= min(_QUICK_BITS, _BITS)
    flips = _bit_table(core, near, bounded=True) if quick else None
    if flips is not None:
        return flips
    plan = _ranged(core, float(core.loss(core.n_r)), bits=True)
    cells = min(near.bits, plan.bits)
    search = _started_search(core) if cells > _QUICK_BITS else None
    found = _near_lattice(core, search.best) if search else None  # sizes in float32, say
    if found is not None:
        return _lower(found, search)
    if cells <= _BITS:  # else no table of bits is within reach
        if search and search.attempt(cells * _SEARCH_SHARE / _BIT_GAIN):
            return search.best_flips
        if not quick and near.bits <= _BITS:
            flips = _bit_table(core, near, bounded=True)
        if flips is None and plan.bits <= _BITS:
            flips = _bit_table(core, plan)
        if flips is not None:
            return flips
    return _rounded_flips(core, search or _started_search(core))


def _started_search(core: _Core) -> _Search:
    """The flip search over the sellers by flip cost, from its first good state."""
    search = _Search(core)
    search.first_state()
    return search


@dataclass(frozen=True)
class _Plan:
    """A table over flips: `items` taken in this order, their pool changes `move` in lattice
    units; after the first t of them, partial pool changes are kept within [lows[t],
    highs[t]], and final ones looked for within [low, high]. Sets whose loss is at most
    `budget` flip at most `most` sellers. The first `coarse` flips move the pool by
    multiples of `ratio` units, so the table takes them on that coarser lattice."""

    items: np.ndarray
    move: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    low: int
    high: int
    budget: float
    most: int
    coarse: int = 0
    ratio: int = 1

    @functools.cached_property
    def start(self) -> int:
        return int(self.lows.min())

    @functools.cached_property
    def stop(self) -> int:
        return int(self.highs.max())

    @functools.cached_property
    def cells(self) -> float:
        """Cells of the flip table: its pool changes [start, stop], and those each flip
        updates (it keeps to the ranges), the coarse flips' on their lattice."""
        updated = np.maximum(self.highs[1:] - self.lows[1:] + 1, 0)
        span = self.stop - self.start + 1
        coarse = (span + updated[: self.coarse].sum()) / self.ratio if self.coarse else 0.0
        return float(span + coarse + updated[self.coarse :].sum())

    @functools.cached_property
    def bits(self) -> float:
        """Cells of the table of bits, which spans [start, stop] before and after every
        flip."""
        return float(self.items.size + 1) * (self.stop - self.start + 1)


def _coarse(core: _Core, items: np.ndarray, move: np.ndarray) -> tuple[np.ndarray, int]:
    """Which of the flips `items` (pool changes `move` in lattice units) a flip table takes
    first, on a coarser lattice, and its ratio to the sizes' one: the integral sizes, when
    the others (reported as a decimal multiple of the true ones, say) make the sizes'
    lattice finer. Ratio 1: there is no coarser lattice."""
    first = core.integral[items]
    ratio = int(np.gcd.reduce(np.abs(move[first]))) if core.odd and first.any() else 1
    return first, ratio


def _alternate(grow: np.ndarray, shrink: np.ndarray) -> np.ndarray:
    """Growing and shrinking flips taken in turn, the longer list's rest at the end."""
    both = min(grow.size, shrink.size)
    return np.concatenate([np.column_stack([grow[:both], shrink[:both]]).ravel(),
                           grow[both:], shrink[both:]])


def _alternating(core: _Core, loss: float, count: int, phased: bool = True) -> _Plan:
    """The `count` cheapest flips costing at most `loss`, alternating between growing and
    shrinking ones, with pool changes kept within _SPAN largest flips beyond both 0 and the
    lattice points next to n0. Partial sums of alternating flips stay near their end, so
    this narrow table usually holds a best set; it may miss some. `phased` (for flip
    tables): integral sizes on a coarser lattice go first (see :func:`_coarse`)."""
    move = core.units(np.arange(core.move.size))
    cheap = np.zeros(move.size, dtype=bool)
    cheap[np.argsort(core.w, kind="stable")[:count]] = True
    cheap &= core.w <= loss
    first, ratio = _coarse(core, np.arange(move.size), move)
    runs = [cheap & first, cheap & ~first] if phased and ratio > 1 else [cheap]
    items = np.concatenate([_alternate(np.flatnonzero(run & (move > 0)),
                                       np.flatnonzero(run & (move < 0))) for run in runs])
    near = core.below_n0()
    span = _SPAN * int(np.abs(move).max())
    start, stop = min(near, 0) - span, max(near + 1, 0) + span
    ends = np.full(items.size + 1, start), np.full(items.size + 1, stop)
    coarse = int(np.count_nonzero(runs[0])) if len(runs) > 1 else 0
    return _Plan(items, move[items], *ends, start, stop, loss, items.size, coarse, ratio)


def _most_moved(sizes: np.ndarray, w: np.ndarray, loss: float, cap: int) -> tuple[np.ndarray, ...]:
    """For the flips of one direction sorted by cost w, and each i = 0..n: upper bounds on
    how far the flips after the first i, and the first i, can move the pool while costing at
    most `loss`. k flips (k at most `cap`, and at most the number whose k cheapest costs fit
    within `loss`) move it by at most the k largest sizes of the direction, at most k times
    the largest size among them, and at most their total size."""
    n = sizes.size
    i = np.arange(n + 1)
    spent = np.zeros(n + 1)
    np.cumsum(w, out=spent[1:])
    budget = loss * (1 + 1e-9)
    left = np.minimum(np.searchsorted(spent, spent + budget, side="right") - 1 - i, cap)
    taken = np.minimum(np.minimum(i, np.searchsorted(spent, budget, side="right") - 1), cap)
    largest, total = np.zeros(n + 1, dtype=np.int64), np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.sort(sizes)[::-1], out=largest[1:])
    np.cumsum(sizes, out=total[1:])
    widest_left, widest_taken = np.zeros(n + 1, dtype=np.int64), np.zeros(n + 1, dtype=np.int64)
    widest_left[:-1] = np.maximum.accumulate(sizes[::-1])[::-1]
    widest_taken[1:] = np.maximum.accumulate(sizes)
    return (np.minimum(np.minimum(largest[left], left * widest_left), total[-1] - total),
            np.minimum(np.minimum(largest[taken], taken * widest_taken), total))


def _ranged(core: _Core, loss: float, bits: bool = False, slack: int = 1,
            pools: tuple[float, float] = (0.0, np.inf),
            shifts: tuple[float, float] = (0.0, 0.0)) -> _Plan:
    """Step 3d: the table over the flips costing at most `loss`, for pool changes that can
    still end where L <= loss. After the first t flips, a partial pool change x is kept only
    when the flips taken can reach it and those left can bring it back: low - (most the
    growing flips left can move) <= x <= high + (most the shrinking ones left can move),
    and -(most the shrinking flips taken can move) <= x <= (most the growing ones taken can
    move). A direction's flips move the pool by at most its k largest sizes when no k + 1
    of them cost within `loss`, and when k of its smallest would overshoot the target pools
    by more than the other direction can move. Each direction is taken by ascending cost, so
    the flips left grow dearer and their reach shrinks; of the orders by cost, shrinking
    first and growing first, the one with the fewest cells (`bits`: for the table of bits)
    is kept. Flip tables take the flips on a coarser lattice first (see :func:`_coarse`)
    when they are at least half of them, each run by cost; the reach of a direction's
    flips then adds up over its two runs. Final pool changes are looked for `slack` lattice
    units beyond the pools within `pools` where L <= loss; where L > 0 at all of them, a
    set's flips cost at most `loss` less the least L there. Such a set flips at most as many
    sellers as the cheapest of both directions that fit in that cost together, each
    direction within its reach (the plan's `most`). `shifts` (a, b): the final pools are
    those less some shift within [a, b] where L <= loss (every problem without one seller
    of R, that seller's size)."""
    step, spend, least = core.step, np.inf, 0.0
    while loss - least < spend:  # flips cost at most `loss` less the least L at those pools
        spend = loss - least
        items = np.flatnonzero(core.w <= spend)
        items = items[np.argsort(core.w[items], kind="stable")]
        move = core.units(items)
        up, down = move > 0, move < 0
        sizes = [np.abs(move[flips]) for flips in (up, down)]
        costs = [core.w[items[flips]] for flips in (up, down)]
        spent = [np.cumsum(c) for c in costs]  # the k cheapest of a direction
        counts = [int(np.searchsorted(c, spend * (1 + 1e-9), "right")) for c in spent]
        largest = [np.cumsum(np.sort(s)[::-1]) for s in sizes]  # the k largest of a direction
        grow, shrink = (int(big[k - 1]) if k else 0 for big, k in zip(largest, counts, strict=True))
        low, high = _pools_within(core, loss,
                                  max(core.n_r - shrink * step, pools[0]) - shifts[1],
                                  min(core.n_r + grow * step, pools[1]) - shifts[0])
        least = float(core.loss(min(max(core.n0, low), high)))
        low, high = low + shifts[0], high + shifts[1]
    loss = spend
    low = int(np.floor((low - core.n_r) / step)) - slack
    high = int(np.ceil((high - core.n_r) / step)) + slack
    caps = [max(room // int(s.min()), 0) if s.size else 0
            for s, room in zip(sizes, (high + shrink, grow - low), strict=True)]
    most = _most_flips(spent, [min(count, cap) for count, cap in zip(counts, caps, strict=True)],
                       spend)
    first, ratio = _coarse(core, items, move)
    later = ~first  # the flips of the second run
    if bits or ratio == 1 or 2 * np.count_nonzero(later) > items.size:
        reach = [_most_moved(s, c, loss, cap) for s, c, cap in zip(sizes, costs, caps, strict=True)]
        later, ratio = np.zeros(items.size, dtype=bool), 1
    else:
        reach = []
        for flips, big, count, cap in zip((up, down), largest, counts, caps, strict=True):
            run = np.concatenate([np.flatnonzero(flips & first), np.flatnonzero(flips & later)])
            whole = int(big[min(count, cap) - 1]) if min(count, cap) else 0
            reach.append(_moved_in_runs(np.abs(move[run]), core.w[items[run]],
                                        int(np.count_nonzero(flips & first)), loss, cap, whole))
    return _ordered(items, move, (low, high), loss, most, later, ratio, reach, bits)


def _most_flips(spent: list[np.ndarray], caps: list[int], spend: float) -> int:
    """The most flips a set costing at most `spend` can have, with at most caps[d] flips of
    direction d (spent[d][k - 1]: the cost of its k cheapest): a + b for the a cheapest
    growing and b cheapest shrinking flips that fit together."""
    grow, shrink = (np.append(0.0, c[:cap]) for c, cap in zip(spent, caps, strict=True))
    fits = np.searchsorted(shrink, spend * (1 + 1e-9) - grow, "right") - 1  # -1: none
    return int(np.max((np.arange(grow.size) + fits)[fits >= 0], initial=0))


def _ordered(items: np.ndarray, move: np.ndarray, ends: tuple[int, int], loss: float, most: int,
             later: np.ndarray, ratio: int, reach: list, bits: bool) -> _Plan:
    """The plan of :func:`_ranged` with the fewest cells, of three orders of the flips
    (`later`: those taken after the others, on the sizes' lattice; the others, on the
    lattice `ratio` times coarser): each run by cost, shrinking flips first, or growing ones
    first. `reach` holds each direction's (left, taken) of :func:`_most_moved`."""
    low, high = ends
    up = move > 0
    position = np.arange(items.size)
    orders = np.stack([np.lexsort((position, later)), np.lexsort((position, up, later)),
                       np.lexsort((position, ~up, later))])
    ups = np.zeros((3, items.size + 1), dtype=np.int64)  # growing flips among the first t
    np.cumsum(up[orders], axis=1, out=ups[:, 1:])
    downs = np.arange(items.size + 1) - ups
    (grow_left, grow_taken), (shrink_left, shrink_taken) = reach
    lows = np.maximum(low - grow_left[ups], -shrink_taken[downs])
    highs = np.minimum(high + shrink_left[downs], grow_taken[ups])
    coarse = int(np.count_nonzero(~later)) if ratio > 1 else 0
    if bits:
        cells = highs.max(axis=1) - lows.min(axis=1)
    else:
        updated = np.maximum(highs[:, 1:] - lows[:, 1:] + 1, 0)
        cells = updated[:, :coarse].sum(axis=1) / ratio + updated[:, coarse:].sum(axis=1)
    k = int(np.argmin(cells))
    return _Plan(items[orders[k]], move[orders[k]], lows[k], highs[k], low, high, loss, most,
                 coarse, ratio)


def _moved_in_runs(sizes: np.ndarray, w: np.ndarray, split: int, loss: float, cap: int,
                   whole: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_most_moved` for the flips of one direction taken in two runs, each by cost
    (the first `split` flips, then the others): what the flips left, or taken, move is at
    most what their part of each run moves, and at most `whole`, what all of them move."""
    first_left, first_taken = _most_moved(sizes[:split], w[:split], loss, cap)
    later_left, later_taken = _most_moved(sizes[split:], w[split:], loss, cap)
    left = np.concatenate([first_left[:-1] + later_left[0], later_left])
    taken = np.concatenate([first_taken, first_taken[-1] + later_taken[1:]])
    return np.minimum(left, whole), np.minimum(taken, whole)


def _pools_within(core: _Core, loss: float, low: float, high: float) -> tuple[float, float]:
    """An interval of pools within [low, high] holding every pool where L <= loss (L is
    convex with its minimum 0 at n0): no set outside it can have a total loss that low,
    since flip costs are >= 0. Each end is found by Newton's method from outside: L is
    convex, so each tangent's crossing of `loss` still lies outside, and the steps shrink
    quadratically near the crossing."""
    sqrt_k, n0, r = core.sqrt_k, core.n0, core.r

    def edge(n: float) -> float:
        for _ in range(64):
            sn, s0 = math.sqrt(n), core.root_n0
            over = (n - n0) * (r - sqrt_k / (sn * s0 * (sn + s0))) - loss
            slope = r - 0.5 * sqrt_k / (n * sn)
            if over <= 0.0 or slope == 0.0:
                return n
            step = over / slope
            if abs(step) < 0.25 * core.step:
                return n
            n -= step
        return n

    return edge(low), edge(high)


def _reach_bits(moves: np.ndarray, start: int, stop: int) -> list[int]:
    """Tables of bits: entry t has bit x - start set when the first t of `moves` (pool
    changes in lattice units) can change the pool by x, partial changes kept within [start,
    stop]."""
    full = (1 << (stop - start + 1)) - 1
    reach = [1 << -start]
    for u in moves.tolist():
        bits = reach[-1]
        if abs(u) <= stop - start:  # a longer move always leaves the range
            bits |= (bits << u) & full if u > 0 else bits >> -u
        reach.append(bits)
    return reach


def _traced(reach: list[int], items: np.ndarray, moves: np.ndarray, at: int) -> np.ndarray:
    """The items whose moves reach bit `at` of the last table of `reach`."""
    flips = []
    for j in range(items.size - 1, -1, -1):
        if not reach[j] >> at & 1:
            flips.append(items[j])
            at -= int(moves[j])
    return np.array(flips, dtype=np.int64)


def _bit_table(core: _Core, plan: _Plan, bounded: bool = False) -> np.ndarray | None:
    """The flips of the plan that reach the pool nearest n0 from below or above (L is
    convex), when every flip is free. The reachable pool changes are the bits of one integer
    per flip taken (sets that leave the plan's ranges but stay within [start, stop] are
    kept: they are sets all the same). With `bounded`, None unless that pool is the best
    lattice point next to n0, which no set can beat (a narrow plan may miss some sets)."""
    start, stop = plan.start, plan.stop
    reach = _reach_bits(plan.move, start, stop)
    bits = reach[-1]

    def loss(x: int) -> float:
        return float(core.loss(core.n_r + (x + start) * core.step))

    near = min(max(core.below_n0() - start, 0), stop - start)
    below = bits & ((2 << near) - 1)
    above = bits >> (near + 1) << (near + 1)
    at = min((x.bit_length() - 1 for x in (below, above & -above) if x), key=loss)
    if bounded and loss(at) > min(loss(near), loss(near + 1)):
        return None
    return _traced(reach[:-1], plan.items, plan.move, at)


def _near_step(move: np.ndarray) -> float:
    """The coarsest lattice 10^-k (k <= 3, times the gcd of the pool changes in its units)
    that rounding every pool change onto moves them all together by at most _NEAR_SHARE of
    it, or 0 when there is none (a pool change would round to 0)."""
    for k in range(4):
        units = np.rint(move * 10.0**k)
        if (units.all() and np.abs(units).sum() < 2.0**52
                and np.abs(move * 10.0**k - units).sum() <= _NEAR_SHARE):
            return float(np.gcd.reduce(np.abs(units).astype(np.int64))) / 10.0**k
    return 0.0


def _near_lattice(core: _Core, loss: float) -> tuple[float, np.ndarray] | None:
    """Step 3k of the module docstring: sizes near a decimal lattice. Returns (loss, flips)
    of a set no set can beat by more than ``tol`` (or beat `loss` at all), else None (also
    when the sizes' own lattice is as coarse: 3d and 3e apply)."""
    step = _near_step(core.move)
    if step <= core.step:
        return None
    near = core.rounded(step, np.rint)
    free = not core.w.any()
    plan = _ranged(near, loss, bits=free)  # every set of loss at most `loss`, but with costs
    reach = free or plan.budget >= loss  # only when n0 lies within its reach (all flips kept)
    if not reach or (plan.bits > _BITS if free else plan.cells > _CELLS):
        return None
    moved = np.sort((core.move - near.units(np.arange(core.move.size)) * step)[plan.items])
    off = (float(-np.minimum(moved[: plan.most], 0.0).sum()),  # how far rounding moves a set's
           float(np.maximum(moved[::-1][: plan.most], 0.0).sum()))  # pool: down, up
    found, bound = (_near_free if free else _near_costly)(core, near, plan, off)
    return found if found is not None and found[0] <= min(bound, loss) + core.tol else None


def _near_free(core: _Core, near: _Core, plan: _Plan,
               off: tuple[float, float]) -> tuple[tuple[float, np.ndarray] | None, float]:
    """Step 3k with every flip free: the best of the sets traced at the reachable lattice
    points next to n0, below and above, as (loss, flips), and the least loss any set
    reaching a point of the plan can have (its pool lies within `off` = (below, above) of
    that point)."""
    reach = _reach_bits(plan.move, plan.start, plan.stop)
    split = min(max(near.below_n0() - plan.start, -1), plan.stop - plan.start)
    below = reach[-1] & ((2 << split) - 1) if split >= 0 else 0
    above = reach[-1] >> (split + 1) << (split + 1)
    points = [x.bit_length() - 1 for x in (below, above & -above) if x]
    pools = core.n_r + (np.array(points) + plan.start) * near.step
    bound = float(core.loss(np.clip(core.n0, pools - off[0], pools + off[1])).min(initial=np.inf))
    traced = [_traced(reach[:-1], plan.items, plan.move, at) for at in points]
    return _least_loss(core, traced), bound


def _near_costly(core: _Core, near: _Core, plan: _Plan,
                 off: tuple[float, float]) -> tuple[tuple[float, np.ndarray] | None, float]:
    """Step 3k with flip costs: the flip table of the rounded flips; the best of the sets
    traced at its least total and at its least bound, as (loss, flips), and the least loss
    any set ending in the table's final range can have (its cost is at least its cell's
    less tol / 4, and its pool lies within `off` = (below, above) of the cell's)."""
    table = _filled(near, plan, exact=True)
    first, last = table.ends
    cells = np.arange(first, last + 1)
    cells = cells[table.cheapest[cells] < table.top]
    if not cells.size:
        return None, np.inf
    pools = core.n_r + (cells + table.start) * near.step
    costs = table.cheapest[cells] * table.unit
    bounds = costs - core.tol / 4 + core.loss(np.clip(core.n0, pools - off[0], pools + off[1]))
    points = {int(cells[np.argmin(costs + core.loss(pools))]), int(cells[np.argmin(bounds)])}
    return _least_loss(core, [_table_trace(table, at) for at in points]), float(bounds.min())


def _least_loss(core: _Core, sets: list[np.ndarray]) -> tuple[float, np.ndarray] | None:
    """(loss, flips) of the set of flips with the least loss, or None when there is none."""
    return min(((core.flip_loss(flips), flips) for flips in sets), key=lambda found: found[0],
               default=None)


def _off_lattice(core: _Core, loss: float) -> tuple[float, np.ndarray] | None:
    """Step 3f of the module docstring: every flip free, integral sizes but for at most
    _OFF_LATTICE others. Returns (loss, flips) of the best set whose loss is below `loss`,
    (inf, none) when there is none, or None when the step does not apply or cannot decide.

    The flips of the others, S, move the pool by f_S; the integral flips then reach
    changes d (in units g of their lattice) listed by a table of bits, complete for the
    pools where L < `loss`. The best pool with S is the reachable lattice point next to n0
    below or above (L is convex), and only the S whose pools can lie where L < `loss`
    count. When they are at most _AT_ONCE times as many as a half's subsets, each is paired
    with its reachable lattice points at once. Otherwise: if every d were reachable, the
    best pool would be n0 - delta_S or n0 - delta_S + g with delta_S = (n0 - n_r - f_S) mod
    g; the least and the largest delta_S come from the two halves' subset sums mod g, one
    half sorted (meet in the middle). This bounds every set from below, so when one of the
    sets S so paired reaches the bound (tried _CHUNK at a time), it is optimal. Else they
    give a good set, and only the S whose pools can lie where L beats it are paired one by
    one (at most _PAIRS of them)."""
    off, on = np.flatnonzero(~core.integral), np.flatnonzero(core.integral)
    g = _lattice(core.size[on]) if on.size else 0.0
    if not 0 < off.size <= _OFF_LATTICE or not g:
        return None
    halves = off[: off.size // 2], off[off.size // 2 :]
    (first, first_code), (second, second_code) = (_sorted_subsets(core.move[h]) for h in halves)
    low, high = _pools_within(core, loss, core.n_r + core.move[core.move < 0].sum(),
                              core.n_r + core.move[core.move > 0].sum())
    moves = np.rint(core.move[on] / g).astype(np.int64)
    grow, shrink = int(moves[moves > 0].sum()), int(-moves[moves < 0].sum())
    least = max(int(np.floor((low - core.n_r - first[-1] - second[-1]) / g)) - 1, -shrink)
    most = min(int(np.ceil((high - core.n_r - first[0] - second[0]) / g)) + 1, grow)
    spans = [(max(min(least - grow, 0), -shrink), max(most, 0)),  # shrinking flips first
             (min(least, 0), min(max(most + shrink, 0), grow))]  # growing flips first
    shrinks_first = spans[0][1] - spans[0][0] <= spans[1][1] - spans[1][0]
    start, stop = spans[0] if shrinks_first else spans[1]
    if on.size * (stop - start + 1.0) > _BITS:
        return None
    order = np.argsort(moves if shrinks_first else -moves, kind="stable")
    reach = _reach_bits(moves[order], start, stop)
    bits = np.unpackbits(np.frombuffer(reach[-1].to_bytes((stop - start) // 8 + 1, "little"),
                                       dtype=np.uint8), bitorder="little")
    at = np.flatnonzero(bits[least - start : most - start + 1]) + least  # reachable changes
    if not at.size:
        return np.inf, np.zeros(0, dtype=np.int64)
    gap = core.n0 - core.n_r

    def best(shift: np.ndarray, codes: tuple[np.ndarray, np.ndarray]) -> tuple:
        """Of the sets S moving the pool by `shift` (their halves' `codes`), with the
        reachable changes next to n0: (loss, first code, second code, d)."""
        under = np.searchsorted(at, np.floor((gap - shift) / g), side="right") - 1
        change = np.concatenate([at[np.maximum(under, 0)], at[np.minimum(under + 1, at.size - 1)]])
        losses = core.loss(core.n_r + np.tile(shift, 2) + change * g)
        k = int(np.argmin(losses))
        pair = k % shift.size
        return float(losses[k]), int(codes[0][pair]), int(codes[1][pair]), int(change[k])

    def paired(low: float, high: float, limit: int) -> tuple | None:
        """`best` of the sets S whose pools can lie within [low, high], (inf, ...) when there
        is none, or None when they are more than `limit`. Both halves are sorted, so the
        searches go in order."""
        lo = np.searchsorted(second, low - core.n_r - at[-1] * g - first)
        hi = np.searchsorted(second, high - core.n_r - at[0] * g - first, side="right")
        count = np.maximum(hi - lo, 0)
        total = int(count.sum())
        if total > limit:
            return None
        if not total:
            return np.inf, 0, 0, 0
        i, j = _ranges(lo, count)
        return best(first[i] + second[j], (first_code[i], second_code[j]))

    found = paired(low, high, _AT_ONCE * first.size)  # the sets that can beat `loss`, if few
    if found is None:
        (left, left_code), (right, right_code) = (_sorted_subsets(core.move[h], g) for h in halves)
        residue = np.mod(right, g)
        target = np.mod(gap - left, g)
        below = np.searchsorted(residue, target, side="right") - 1  # -1: the largest (wraps)
        above = np.where(below + 1 == residue.size, 0, below + 1)  # past the end: the least
        i = np.tile(np.arange(left.size), 2)
        j = np.concatenate([below, above])
        shift = left[i] + right[j]
        pools = core.n0 - np.mod(gap - shift, g) + np.repeat([0.0, g], left.size)
        possible = pools[pools > 0]  # if every change were reachable; pools are positive
        bound = float(core.loss(possible).min()) if possible.size else -np.inf
        found = (np.inf, 0, 0, 0)
        for part in range(0, shift.size, _CHUNK):  # until a set reaches the bound
            chunk = slice(part, part + _CHUNK)
            found = min(found, best(shift[chunk], (left_code[i[chunk]], right_code[j[chunk]])))
            if found[0] <= bound + core.tol:
                break
        if found[0] > bound + core.tol:
            more = paired(*_pools_within(core, min(found[0], loss), low, high), _PAIRS)
            if more is None:
                return None
            found = min(found, more)
    if not np.isfinite(found[0]):
        return np.inf, np.zeros(0, dtype=np.int64)
    value, i, j, change = found
    flips = [halves[0][b] for b in range(halves[0].size) if i >> b & 1]
    flips += [halves[1][b] for b in range(halves[1].size) if j >> b & 1]
    return value, np.concatenate([np.array(flips, dtype=np.int64),
                                  _traced(reach[:-1], on[order], moves[order], change - start)])


def _sorted_subsets(move: np.ndarray, g: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The pool change of every subset of the flips `move` and its code (bit b flags
    move[b]), sorted by pool change, or by pool change mod g when g > 0; read-only, and
    remembered for the last _REMEMBERED lists (the buyers of one market mostly share them)."""
    return _subsets_in_order(np.ascontiguousarray(move, dtype=float).tobytes(), float(g))


@functools.lru_cache(maxsize=_REMEMBERED)
def _subsets_in_order(moves: bytes, g: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_sorted_subsets` of the flips whose pool changes are `moves` (float64 bytes).
    Built one flip at a time: each step merges sorted runs (two, or three mod g), which a
    stable sort does in linear time."""
    total, code = np.zeros(1), np.zeros(1, dtype=np.int64)
    for b, dm in enumerate(np.frombuffer(moves).tolist()):
        total, code = np.concatenate([total, total + dm]), np.concatenate([code, code | 1 << b])
        order = np.argsort(np.mod(total, g) if g else total, kind="stable")
        total, code = total[order], code[order]
    total.flags.writeable = code.flags.writeable = False
    return total, code


def _few_members(core: _Core, search: _Search) -> tuple[float, np.ndarray] | None:
    """Step 3g of the module docstring: every flip free, sizes on no lattice. Returns
    (loss, flips) of the best set when the sets that can beat the search's best state are
    few enough to pair, or the search's when it finishes first (it goes on for a share of
    the time of each pairing), or None. It offers the search good sets: first the best of
    the k smallest or largest sellers, then, while the sets are too many to pair, the best
    of k <= _GUESS_MOST sellers paired from two disjoint lists of the sellers nearest the
    mean size such a set needs, longer lists each time; for k > _GUESS_MOST, the k sellers
    nearest that mean, polished (:func:`_near_mean_settles`)."""
    search.offer(*_extreme_sets(core))
    for budget in (*_GUESS_SETS, 0):
        members = _set_members(core, search.best)
        if members is None:  # sizes spread widely: the search does better
            return None
        every = [_Pairing(m, m, min(k, m.size - k), m if 2 * k > m.size else None)
                 for k, m in members.items() if k <= m.size]
        work = sum(_pairing_work(x.first.size, x.second.size, x.count) for x in every)
        if work <= _FEW_SETS:  # the search first, for a share of the pairing's time
            if search.attempt(work * _PAIR_SHARE):
                return search.best, search.best_flips
            return _paired_members(core, every)  # None: too many sets share sellers
        many = {k: m for k, m in members.items() if _GUESS_MOST < k <= m.size}
        if budget == _GUESS_SETS[0] and many and _near_mean_settles(core, search, many):
            return search.best, search.best_flips
        guessed = {k: m for k, m in members.items() if 0 < k <= _GUESS_MOST}
        if not budget or not guessed:
            return None
        share, halves = budget // len(guessed), []
        for k, m in guessed.items():
            near = _nearest_mean(core, k, m)
            fewer, more = 0, m.size + 1  # the most sellers that fit the share, by bisection
            while more - fewer > 1:
                mid = (fewer + more) // 2
                if _pairing_work(mid - mid // 2, mid // 2, k) <= share:
                    fewer = mid
                else:
                    more = mid
            halves.append(_Pairing(near[:fewer:2], near[1:fewer:2], k))
        search.offer(*_paired_members(core, halves))
        if search.best <= core.tol or search.attempt(budget * _PAIR_SHARE):  # no loss < 0
            return search.best, search.best_flips
    return None


def _nearest_mean(core: _Core, k: int, m: np.ndarray, base: float | None = None
                  ) -> np.ndarray:
    """The sellers `m` by how near their size is to the mean size a set of k needs on top
    of `base` (the core's when None) to reach n0."""
    need = core.n0 - (core.base if base is None else base)
    return m[np.argsort(np.abs(core.size[m] - need / max(k, 1)), kind="stable")]


def _near_mean_settles(core: _Core, search: _Search, members: dict[int, np.ndarray]) -> bool:
    """Offers the search the best set of the k sellers of members[k] nearest the mean size it
    needs, over every k, and, after the search has had a short go, that set polished:
    toggles of up to four of the _EDGE sellers either side of the k-th nearest. True when
    the search is settled: it finished, or a set is within ``tol`` of the relaxation (no
    loss is below 0)."""
    near = {k: _nearest_mean(core, k, m) for k, m in members.items()}
    for k, m in near.items():
        search.offer(*_as_flips(core, m[:k]))
    if search.best <= core.tol or search.attempt(core.w.size * _OFF_STATES):
        return True
    edge = np.unique(np.concatenate([m[max(k - _EDGE, 0): k + _EDGE] for k, m in near.items()]))
    search.offer(*_polish(core, search.best_flips, edge))
    return search.best <= core.tol


def _extreme_sets(core: _Core) -> tuple[float, np.ndarray]:
    """(loss, flips) of the best set of the k smallest or the k largest sellers, over every
    k: the best set when n0 lies between what k sellers can reach and what k + 1 can, and
    every flip is free."""
    by_size = np.argsort(core.size, kind="stable")
    ends = by_size, by_size[::-1]
    costs = _member_costs(core)
    totals, spent = (np.stack([np.concatenate([[0.0], np.cumsum(x[end])]) for end in ends])
                     for x in (core.size, costs))
    losses = core.loss(core.base + totals) + spent
    which, k = np.unravel_index(int(np.argmin(losses)), losses.shape)
    return _as_flips(core, ends[which][:k])


def _member_costs(core: _Core) -> np.ndarray:
    """What each seller adds to the flip cost of a set holding it: w outside R, -w in R
    (a set S flips S xor R, at cost sum_{j in S} of these plus sum_{j in R} w_j)."""
    return np.where(core.in_r, -core.w, core.w)


def _r_costs(core: _Core) -> float:
    """sum_{j in R} w_j: the flip cost every set pays besides its members' costs
    (:func:`_member_costs`)."""
    return float(core.w[core.in_r].sum())


def _as_flips(core: _Core, sellers: np.ndarray) -> tuple[float, np.ndarray]:
    """(loss, flips) of the set of `sellers`."""
    flips = np.flatnonzero(np.isin(np.arange(core.size.size), sellers) ^ core.in_r)
    return core.flip_loss(flips), flips


def _listed_members(core: _Core, search: _Search) -> tuple[float, np.ndarray] | None:
    """Step 3h of the module docstring: flips with costs, sizes on no lattice. Returns
    (loss, flips) of the best set when the sets that can beat the search's best state,
    once it is offered the best set of the k smallest or largest sellers, are few enough
    to list (at most _LISTED_SETS), or the search's when it finishes first (it goes on for
    a share of the time of the listing); None when they are more."""
    members = _set_members(core, search.best)
    if members is not None and search.offer(*_extreme_sets(core)):
        members = _set_members(core, search.best)
    if members is None or _set_count(members) > _LISTED_SETS:
        return None
    if search.attempt(_set_count(members) * _PAIR_SHARE):
        return search.best, search.best_flips
    return _best_listed(core, members)


def _set_count(members: dict[int, np.ndarray]) -> int:
    """How many sets of k of the sellers members[k] there are, over every k."""
    return sum(math.comb(m.size, k) for k, m in members.items())


def _best_listed(core: _Core, members: dict[int, np.ndarray]) -> tuple[float, np.ndarray]:
    """(loss, flips) of the best set of k of the sellers members[k], over every k, each
    set listed by its members or, when fewer, by the members it leaves out; (inf, none)
    when there is no such set."""
    costs = _member_costs(core)
    best, chosen = np.inf, None
    for k, m in members.items():
        if k > m.size:
            continue
        out = 2 * k > m.size
        (size, spent), picks = _combination_sums(m.size, m.size - k if out else k,
                                                 (core.size[m], costs[m]))
        if out:
            size, spent = core.size[m].sum() - size, costs[m].sum() - spent
        losses = core.loss(core.base + size) + spent
        i = int(np.argmin(losses))
        if losses[i] < best:
            rows = m[_traced_subsets(picks, np.array([i]))[0]]
            best, chosen = float(losses[i]), np.setdiff1d(m, rows) if out else rows
    if chosen is None:
        return np.inf, np.zeros(0, dtype=np.int64)
    return _as_flips(core, chosen)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges [starts_i, starts_i + counts_i) laid end to end: for each element, its
    range i and its value."""
    row = np.repeat(np.arange(counts.size), counts)
    return row, np.arange(row.size) + np.repeat(starts - (np.cumsum(counts) - counts), counts)


def _combination_sums(n: int, h: int, values: tuple[np.ndarray, ...] = ()) -> tuple[list, list]:
    """For each array of `values` (n entries), its sums over every h-subset of range(n) in
    ascending order of the subsets, and per member picked (its entry, the subset it extends)
    to trace the subsets back (:func:`_traced_subsets`). Built one member at a time."""
    sums, last, picks = [np.zeros(1) for _ in values], np.full(1, -1), []
    for left in range(h, 0, -1):  # members still to pick, this one included
        count = np.maximum(n - left - last, 0)  # room for the others after this one
        parent, last = _ranges(last + 1, count)
        sums = [np.repeat(total, count) + x[last] for total, x in zip(sums, values, strict=True)]
        picks.append((last, parent))
    return sums, picks


def _traced_subsets(picks: list[tuple], at: np.ndarray) -> np.ndarray:
    """The members of the subsets `at` of :func:`_combination_sums`, one per row."""
    columns = []
    for last, parent in reversed(picks):
        columns.append(last[at])
        at = parent[at]
    return np.column_stack(columns[::-1]) if columns else np.zeros((at.size, 0), dtype=np.int64)


def _winning_pools(core: _Core, loss: float) -> tuple[float, float]:
    """An interval holding the pool of every set whose loss is below `loss`
    (:func:`_pools_within`), widened by the rounding of sums of sizes."""
    top = core.base + float(core.size.sum())
    low, high = _pools_within(core, loss, core.base, top)
    slack = 1e-9 * top
    return low - slack, high + slack


def _set_members(core: _Core, loss: float, most: int = _FEW_COUNTS
                 ) -> dict[int, np.ndarray] | None:
    """For each number of sellers k that a set S with its pool where L < `loss` can have,
    the sellers it can hold; None when there are more than `most` such k. Its total
    size x_S lies in an interval, which bounds k; a seller whose size plus the k - 1
    smallest, or largest, misses the interval cannot be in it."""
    s, base = core.size, core.base
    sums = _extreme_sums(s)
    x0 = core.n0 - base  # in the interval: a quick look whether it holds too many k
    if np.count_nonzero((sums[0] <= x0) & (sums[1] >= x0)) > most:
        return None
    low, high = (pool - base for pool in _winning_pools(core, loss))
    return _sellers_by_count(s, sums, low, high, most)


def _extreme_sums(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The totals of the k smallest and of the k largest `sizes`, for k = 0, 1, ..."""
    by_size = np.sort(sizes)
    return tuple(np.concatenate([[0.0], np.cumsum(x)]) for x in (by_size, by_size[::-1]))


def _sellers_by_count(sizes: np.ndarray, sums: tuple[np.ndarray, np.ndarray], low: float,
                      high: float, most: int) -> dict[int, np.ndarray] | None:
    """For each number of sellers k that a set with its total size in [low, high] can
    have, the sellers it can hold (one whose size plus the k - 1 smallest, or largest,
    misses the interval cannot); None when there are more than `most` such k. `sums`:
    :func:`_extreme_sums` of `sizes`."""
    smallest, largest = sums
    counts = np.flatnonzero((smallest <= high) & (largest >= low)).tolist()
    if len(counts) > most:
        return None
    return {k: np.flatnonzero((sizes + smallest[k - 1] <= high) & (sizes + largest[k - 1] >= low))
            if k else np.zeros(0, dtype=np.int64) for k in counts}


class _CountDual(NamedTuple):
    """Steps 3l and 3m, for the sets of k of the sellers `members` (core indices; in 3m
    the coarse ones, with the fine ones on top): the slope `mu` of the best Lagrangian
    bound found and that `bound` (flip costs of R included)."""

    k: int
    members: np.ndarray
    mu: float
    bound: float


def _count_duals(core: _Core, loss: float, counts: int) -> list[_CountDual] | None:
    """For each number of sellers k that a set whose loss is below `loss` can have (at most
    `counts` of them; else None), the Lagrangian bound on the loss of the sets of k."""
    members = _set_members(core, loss, counts)
    if members is None:
        return None
    pools = _winning_pools(core, loss)
    costs, spent = _member_costs(core), _r_costs(core)
    duals = []
    for k, m in members.items():
        mu, bound = _dual_of_count(core, [(core.size[m], costs[m], k)], pools, loss - spent)
        duals.append(_CountDual(k, m, mu, spent + bound))
    return duals


def _dual_of_count(core: _Core, groups: list[tuple[np.ndarray, np.ndarray, int]],
                   pools: tuple[float, float], enough: float) -> tuple[float, float]:
    """(mu, bound): a lower bound on L(x_S) + sum_{j in S} costs_j over the sets S of k of
    the sellers (sizes, costs) of each group (sizes, costs, k), with their pools within
    `pools`. For every slope mu < r, L(x) >= L(y) + mu (x - y) with L'(y) = mu (L is
    convex), so the bound is L(y) - mu y plus the sum over the groups of the k least of
    costs_j + mu s_j: concave in mu, with slope the pool of those sellers less y. Its peak
    lies between L' at the least and the most pool such sets can have; the tangents at the
    ends of that bracket meet above it (concave), at the mu tried next (the bracket's
    middle when the last step did not halve it). It stops once that meeting point is within
    _DUAL_GAP tol of the best bound, or at `enough`."""
    if all(k == 0 for _, _, k in groups):
        inside = pools[0] <= core.base <= pools[1]
        return 0.0, float(core.loss(core.base)) if inside else np.inf
    if any(k > sizes.size for sizes, _, k in groups):  # no such set
        return 0.0, np.inf
    by_size = [(np.sort(sizes), k) for sizes, _, k in groups if k]
    low = max(pools[0], core.base + sum(float(s[:k].sum()) for s, k in by_size))
    high = min(pools[1], core.base + sum(float(s[-k:].sum()) for s, k in by_size))
    if low > high:
        return 0.0, np.inf

    def at(mu: float) -> tuple[float, float, float]:
        """(mu, the bound at mu, its slope)."""
        pool = float(_pool_at_slope(core.sqrt_k, core.r - mu))  # y
        size = spent = 0.0
        for sizes, costs, k in groups:
            least = np.argpartition(costs + mu * sizes, k - 1)[:k] if k else slice(0)
            size, spent = size + float(sizes[least].sum()), spent + float(costs[least].sum())
        apart = core.base + size - pool
        return mu, float(core.loss(pool)) + spent + mu * apart, apart

    ends = [at(core.r - float(_slope(core.sqrt_k, n))) for n in (low, high)]
    best, halve = max(ends, key=lambda end: end[1]), False
    for _ in range(_DUAL_STEPS):
        (left, f_left, rise), (right, f_right, fall) = ends
        if best[1] >= enough or rise <= 0 or fall >= 0:  # the peak is at an end
            break
        meet = (f_right - f_left + rise * left - fall * right) / (rise - fall)
        if f_left + rise * (meet - left) - best[1] <= _DUAL_GAP * core.tol:
            break
        step = at(meet if left < meet < right and not halve else 0.5 * (left + right))
        best = max(best, step, key=lambda end: end[1])
        ends[0 if step[2] > 0 else 1] = step
        halve = ends[1][0] - ends[0][0] > 0.5 * (right - left)
    return best[0], best[1]


def _count_sets(core: _Core, loss: float, counts: int = _DUAL_COUNTS
                ) -> tuple[float, np.ndarray] | None:
    """Step 3l of the module docstring: (loss, flips) of the best set whose loss is below
    `loss`, (inf, none) when there is none, or None when such sets have more than `counts`
    numbers of sellers or are too many to list. The sets of one swap go first, for every
    k: the best of them narrows the listing of the rest, which is skipped for the k where
    no two swaps fit."""
    if ("3l", loss) in core.declined:  # (with fewer counts allowed it declines too)
        return None
    duals = _count_duals(core, loss, counts)
    if duals is None:
        return None
    best, chosen, again = loss, None, []
    for most, listed in ((1, duals), (None, again)):
        for dual in listed:
            found = _best_swaps(core, dual, best, most)
            if found is None:
                return core.decline("3l", loss)
            if found[0] < best:
                best, chosen = found[:2]
            if found[2]:
                again.append(dual)
    if chosen is None:
        return np.inf, np.zeros(0, dtype=np.int64)
    return _as_flips(core, chosen)


def _best_swaps(core: _Core, dual: _CountDual, loss: float, most: int | None
                ) -> tuple[float, np.ndarray | None, bool] | None:
    """(loss, sellers, more) of the best set of dual.k sellers whose loss is below `loss`
    and that swaps at most `most` (None: any number) of the sellers T of the bound for
    others (:func:`_swaps`), (inf, None, more) when there is none, or None when there are
    too many to list; `more`: `most` is 1 and sets of two swaps or more can win."""
    slack = loss - dual.bound
    if slack <= 0:
        return np.inf, None, False
    listed = _swaps(core, dual, slack, most)
    if listed is None:
        return None
    pool, paid, swapped, more = listed
    losses = core.loss(pool) + paid
    if not losses.size:
        return np.inf, None, more
    at = int(np.argmin(losses))
    return float(losses[at]), swapped(at), more


def _swaps(core: _Core, dual: _CountDual, slack: float, most: int | None
           ) -> tuple[np.ndarray, np.ndarray, Callable[[int], np.ndarray], bool] | None:
    """(pools, costs, sellers, more) of the sets of dual.k sellers whose terms sum below
    `slack` and that swap at most `most` (None: any number) of the sellers T of the bound
    for others: their pools and flip costs (R's included), a function giving the sellers of
    the set at an index, and `more` (`most` is 1 and sets of two swaps or more fit); None
    when they are too many to list. T holds the k least v_j = costs_j + mu s_j; a set S of
    k exceeds the bound by at least the sum over T - S of (p - v_j) plus the sum over S - T
    of (v_j - p), p the largest v in T, so only sets whose terms sum below `slack` (the
    loss to beat less the bound) can win."""
    m, costs = dual.members, _member_costs(core)
    v = costs[m] + dual.mu * core.size[m]
    order = np.argsort(v, kind="stable")
    taken, left = m[order[: dual.k]], m[order[dual.k :]]
    pivot = float(v[order[dual.k - 1]]) if dual.k else -np.inf
    terms = [pivot - v[order[: dual.k]], v[order[dual.k :]] - pivot]
    fits = [side[side < slack] for side in terms]
    least = [np.sort(fit)[:2] for fit in fits]
    more = most == 1 and min(x.size for x in least) == 2 and least[0].sum() + least[1].sum() < slack
    items = [(-core.size[taken], -costs[taken]), (core.size[left], costs[left])]
    first = int(fits[1].size < fits[0].size)
    sides = [None, None]  # the side with fewer sellers that fit goes first: the other needs
    sides[first] = _light_subsets(terms[first], *items[first], slack, most)  # no more levels
    if sides[first] is not None:
        sides[1 - first] = _light_subsets(terms[1 - first], *items[1 - first], slack,
                                          len(sides[first]) - 1, sides[first])
    if sides[0] is None or sides[1] is None:
        return None
    pool = core.base + float(core.size[taken].sum())
    paid = _r_costs(core) + float(costs[taken].sum())
    levels = list(zip(sides[0], sides[1], strict=False))
    pairs = [_paired_swaps(dropped, added, slack) for dropped, added in levels]
    if any(pair is None for pair in pairs) or sum(i.size for i, _ in pairs) > _LISTED_SETS:
        return None
    starts = np.cumsum([0] + [i.size for i, _ in pairs])
    pools = np.concatenate([pool + dropped.move[i] + added.move[j]
                            for (dropped, added), (i, j) in zip(levels, pairs, strict=True)])
    spent = np.concatenate([paid + dropped.cost[i] + added.cost[j]
                            for (dropped, added), (i, j) in zip(levels, pairs, strict=True)])

    def swapped(at: int) -> np.ndarray:
        """The sellers of the set at `at`."""
        level = int(np.searchsorted(starts, at, side="right")) - 1
        (dropped, added), (i, j) = levels[level], pairs[level]
        row = at - starts[level]
        return np.union1d(np.setdiff1d(taken, taken[dropped.items[i[row]]]),
                          left[added.items[j[row]]])

    return pools, spent, swapped, more


class _Level(NamedTuple):
    """Subsets of d items of step 3l's listing: their summed terms, pool changes, flip
    costs and items (one row each)."""

    terms: np.ndarray
    move: np.ndarray
    cost: np.ndarray
    items: np.ndarray


def _light_subsets(terms: np.ndarray, move: np.ndarray, cost: np.ndarray, slack: float,
                   most: int | None, partner: list[_Level] | None = None
                   ) -> list[_Level] | None:
    """The subsets of at most `most` (None: any number) of the items whose terms sum below
    `slack`, by number of items (level d holds those of d items), or None when they number
    over _LISTED_SETS, or so do their pairs with the subsets of `partner` (the other side's
    levels) whose terms sum below `slack` too, counted level by level. Taken by ascending
    term, a subset extends by the items after its last whose terms fit: a range, so the
    work is that of the subsets listed."""
    order = np.argsort(terms, kind="stable")
    order = order[terms[order] < slack]
    terms, move, cost = terms[order], move[order], cost[order]
    levels = [_Level(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros((1, 0), dtype=np.int64))]
    listed, paired, last = 1, 1, np.full(1, -1)
    while most is None or len(levels) <= most:
        level = levels[-1]
        stop = np.searchsorted(terms, slack - level.terms)  # the items that fit: before stop
        counts = np.maximum(stop - (last + 1), 0)
        total = int(counts.sum())
        if not total:
            break
        listed += total
        if listed > _LISTED_SETS:
            return None
        parent, last = _ranges(last + 1, counts)
        levels.append(_Level(level.terms[parent] + terms[last], level.move[parent] + move[last],
                             level.cost[parent] + cost[last],
                             np.column_stack([level.items[parent], order[last]])))
        if partner is not None:
            paired += int(np.searchsorted(np.sort(partner[len(levels) - 1].terms),
                                          slack - levels[-1].terms).sum())
            if paired > _LISTED_SETS:
                return None
    return levels


def _paired_swaps(dropped: _Level, added: _Level, slack: float
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """(i, j): the pairs of a dropped subset i and an added subset j whose terms sum below
    `slack`, or None when they number over _LISTED_SETS."""
    order = np.argsort(added.terms, kind="stable")
    counts = np.searchsorted(added.terms[order], slack - dropped.terms)
    if int(counts.sum()) > _LISTED_SETS:
        return None
    i, ranked = _ranges(np.zeros_like(counts), counts)
    return i, order[ranked]


def _two_scales(core: _Core, loss: float) -> tuple[float, np.ndarray] | None:
    """Step 3m of the module docstring: (loss, flips) of the best set whose loss is below
    `loss`, (inf, none) when there is none, or None when the sizes have no gap of _SCALES
    with at most _DUAL_COUNTS numbers of coarse sellers (those above it), their sets that
    can win are too many to list, or the fine sellers need over _FINE_SOLVES solves. A set
    of coarse sellers is bounded by the continuous relaxation of the fine ones on top of its
    pool, and the sets of each number of them (:func:`_coarse_dual`), or of each pair of
    numbers of coarse and fine sellers when few (:func:`_pair_dual`, by ascending
    :func:`_pair_floors`: the T of the lowest goes first, and pairs whose floor cannot win
    get no bound), by a bound of 3l. With every flip free and the fine sellers in one band,
    centred sets go first (:func:`_centred_coarse`), with the fine sellers nearest the mean
    they need, polished; one within ``tol`` of the relaxation ends the step. The fine
    sellers are solved exactly, once per coarse set, on top of each bound's set T, the
    lowest bound first (:func:`best_set`, with its pool as their base), then of the sets
    that swap one seller of T, two, or any number and can beat the best by more than ``tol``
    (each listing against the best set so far), listed as in 3l and taken by ascending
    bound. A listed set's bound is the most of the dual's tangent, the relaxation and the
    floor by numbers of fine sellers (:class:`_FineCounts`), the latter two on top of its
    pool and computed only where the tangent leaves it open."""
    if ("3m", loss) in core.declined:
        return None
    pools = _winning_pools(core, loss)
    split = _coarse_counts(core, pools)
    if split is None:
        return None
    fine, members = split
    best, chosen, solved = loss, None, set()

    def solve(pool: float, coarse: np.ndarray) -> None:
        """Offer the coarse sellers `coarse` (pool `pool`) with the best fine ones."""
        nonlocal best, chosen
        solved.add(tuple(coarse.tolist()))
        picked = best_set(core.sqrt_k, pool, core.size[fine], core.price[fine])
        found = _as_flips(core, np.concatenate([coarse, fine[picked]]))
        if found[0] < best:
            best, chosen = found

    if not core.w.any() and not _scale_gaps(core.size[fine]).size:  # free flips, one band
        for pool, coarse, kf in _centred_coarse(core, fine, members):
            near = _nearest_mean(core, kf, fine, pool)  # the fine sellers they need, polished
            found = _polish(core, _as_flips(core, np.concatenate([coarse, near[:kf]]))[1],
                            near[max(kf - _EDGE, 0) : kf + _EDGE])
            if found[0] < best:
                best, chosen = found
            if best <= core.tol:  # within tol of the relaxation: nothing beats it by more
                return best, chosen

    def solve_t(dual: _CountDual) -> None:
        """Offer the set T of `dual` when its bound can beat the best."""
        if dual.bound < best:
            pool, _, traced, _ = _swaps(core, dual, core.tol, 0)  # T alone
            if tuple(traced(0).tolist()) not in solved:
                solve(float(pool[0]), traced(0))

    fill = _Fill(core, fine)
    floors = (lambda y: fill(y)[0], _FineCounts(core, fine, pools))  # of the fine sellers
    pairs = _count_pairs(core, fine, members, pools)
    if len(pairs) <= _DUAL_COUNTS:  # the pair of the lowest floor first: its T is offered
        duals, floored = [], _pair_floors(core, fine, members, pairs)  # before the others
        for at in np.argsort(floored, kind="stable"):  # whose floors can still win
            if floored[at] >= best - core.tol:
                break
            duals.append(_pair_dual(core, fine, members, pools, best, pairs[at]))
            if len(duals) == 1:
                solve_t(duals[0])
    else:
        duals = [_coarse_dual(core, fill, k, m, best) for k, m in members.items()]
    for dual in sorted(duals, key=lambda dual: dual.bound):  # the lowest bound first
        solve_t(dual)
    for most in (1, 2, None):  # sets that swap one seller of T, two, any number
        for share in _SHARES if most else (1.0,):  # of the slack: all, or less when too many
            listed = [(dual, _swaps(core, dual, share * (best - core.tol - dual.bound), most))
                      for dual in duals if dual.bound < best - core.tol]
            if all(found is not None for _, found in listed) and (
                    sum(found[0].size for _, found in listed) <= _LISTED_SETS):
                break
        else:  # too many even within the least share: so are those of more swaps
            return core.decline("3m", loss)
        if not listed:
            break
        starts = np.cumsum([0] + [found[0].size for _, found in listed])
        pools = np.concatenate([found[0] for _, found in listed])
        paid = np.concatenate([found[1] for _, found in listed])
        bounds = np.concatenate([_moved_bound(dual, *found[:2]) for dual, found in listed])
        left = np.flatnonzero(bounds < best - core.tol)
        for floor in floors:  # where the dual's tangent leaves a set open
            if left.size:
                bounds[left] = np.maximum(bounds[left], paid[left] + floor(pools[left]))
                left = left[bounds[left] < best - core.tol]
        for at in left[np.argsort(bounds[left], kind="stable")]:
            if bounds[at] >= best - core.tol:
                break
            which = int(np.searchsorted(starts, at, side="right")) - 1
            coarse = listed[which][1][2](int(at - starts[which]))
            if tuple(coarse.tolist()) in solved:
                continue
            if len(solved) >= _FINE_SOLVES:
                return core.decline("3m", loss)
            solve(float(pools[at]), coarse)
    if chosen is None:
        return np.inf, np.zeros(0, dtype=np.int64)
    return best, chosen


def _centred_coarse(core: _Core, fine: np.ndarray, members: dict[int, np.ndarray]
                    ) -> list[tuple[float, np.ndarray, int]]:
    """Step 3m with every flip free: for each number kc of coarse sellers (members[kc] those
    a set can hold) and kf of the `fine` ones, the (pool, sellers, kf) of the kc coarse
    sellers, consecutive by size, whose pool leaves n0 nearest the middle of the pools that
    kf fine sellers reach on top of it, deepest inside that range first (those that leave
    n0 outside it left out)."""
    fine_smallest, fine_largest = _extreme_sums(core.size[fine])
    middle = core.n0 - core.base - (fine_smallest + fine_largest) / 2  # for each kf
    centred = []
    for kc, m in members.items():
        if kc > m.size:
            continue
        by_size = m[np.argsort(core.size[m], kind="stable")]
        summed = np.concatenate([[0.0], np.cumsum(core.size[by_size])])
        runs = summed[kc:] - summed[: summed.size - kc]  # nondecreasing along by_size
        at = np.clip(np.searchsorted(runs, middle), 1, max(runs.size - 1, 1))
        at = np.where(middle - runs[at - 1] < runs[np.minimum(at, runs.size - 1)] - middle,
                      at - 1, np.minimum(at, runs.size - 1))
        pools = core.base + runs[at]
        depth = np.minimum(core.n0 - pools - fine_smallest, pools + fine_largest - core.n0)
        centred += [(depth[kf], pools[kf], by_size[at[kf] : at[kf] + kc], kf)
                    for kf in np.flatnonzero(depth > 0).tolist()]
    centred.sort(key=lambda found: -found[0])
    return [found[1:] for found in centred]


def _scale_gaps(sizes: np.ndarray) -> np.ndarray:
    """The sizes that are _SCALES or more times the next smaller one (where 3m may split)."""
    by_size = np.sort(sizes)
    return by_size[1:][by_size[1:] >= _SCALES * by_size[:-1]]


def _moved_bound(dual: _CountDual, pools: np.ndarray, paid: np.ndarray) -> np.ndarray:
    """The bound of `dual` for each set of a listing of :func:`_swaps` (pools, flip costs;
    the set T first): the bound moved by the set's sum of v_j = costs_j + mu s_j less T's."""
    v = paid + dual.mu * pools
    return dual.bound + v - v[0]


def _pair_dual(core: _Core, fine: np.ndarray, members: dict[int, np.ndarray],
               pools: tuple[float, float], loss: float, pair: tuple[int, int]) -> _CountDual:
    """For the pair (kc, kf) of numbers of coarse and `fine` sellers (the coarse ones of
    members[kc]; sets with their pools within `pools`), the bound of 3l over both groups at
    once (the kc least v_j of the coarse sellers and the kf least of the fine ones), as a
    bound on the sets of kc coarse sellers; it stops once it reaches `loss`."""
    (kc, kf), m = pair, members[pair[0]]
    costs, spent = _member_costs(core), _r_costs(core)
    groups = [(core.size[m], costs[m], kc), (core.size[fine], costs[fine], kf)]
    mu, bound = _dual_of_count(core, groups, pools, loss - spent)
    return _CountDual(kc, m, mu, spent + bound)


def _pair_floors(core: _Core, fine: np.ndarray, members: dict[int, np.ndarray],
                 pairs: list[tuple[int, int]]) -> np.ndarray:
    """For each pair (kc, kf), a floor on the loss of its sets: kc coarse sellers of
    members[kc] and kf `fine` ones reach a pool between their smallest and their largest
    sizes summed, and cost at least their kc and kf least costs as members, so such a set
    loses at least L at the point of that range nearest n0 (L is convex) plus those costs
    (and R's)."""
    costs, spent = _member_costs(core), _r_costs(core)
    fine_sums = _extreme_sums(core.size[fine])
    fine_costs = np.concatenate([[0.0], np.cumsum(np.sort(costs[fine]))])
    coarse = {kc: (_extreme_sums(core.size[members[kc]]),  # once per number kc
                   float(np.sort(costs[members[kc]])[:kc].sum()))
              for kc in dict.fromkeys(kc for kc, _ in pairs)}
    floors = np.empty(len(pairs))
    for at, (kc, kf) in enumerate(pairs):
        sums, least = coarse[kc]
        smallest, largest = (float(x[kc] + y[kf]) for x, y in zip(sums, fine_sums, strict=True))
        nearest = min(max(core.n0, core.base + smallest), core.base + largest)
        floors[at] = float(core.loss(nearest)) + least + float(fine_costs[kf]) + spent
    return floors


def _count_pairs(core: _Core, fine: np.ndarray, members: dict[int, np.ndarray],
                 pools: tuple[float, float]) -> list[tuple[int, int]]:
    """The numbers kc of coarse sellers (members[kc] those a set can hold) and kf of the
    `fine` ones that a set with its pool within `pools` can have."""
    low, high = (pool - core.base for pool in pools)
    fine_smallest, fine_largest = _extreme_sums(core.size[fine])
    pairs = []
    for kc, m in members.items():
        if kc <= m.size:
            smallest, largest = (float(x[kc]) for x in _extreme_sums(core.size[m]))
            pairs += [(kc, int(kf)) for kf in np.flatnonzero(
                (smallest + fine_smallest <= high) & (largest + fine_largest >= low))]
    return pairs


def _coarse_counts(core: _Core, pools: tuple[float, float]
                   ) -> tuple[np.ndarray, dict[int, np.ndarray]] | None:
    """(fine sellers, for each number k of coarse sellers that a set with its pool within
    `pools` can hold, the coarse sellers it can hold) for the gap of _SCALES or more between
    sizes that leaves the fewest such k; None when there is no such gap or each leaves
    over _DUAL_COUNTS."""
    s = core.size
    low, high = (pool - core.base for pool in pools)
    best, most = None, _DUAL_COUNTS
    for edge in _scale_gaps(s):
        coarse, fine = np.flatnonzero(s >= edge), np.flatnonzero(s < edge)
        sizes = s[coarse]
        members = _sellers_by_count(sizes, _extreme_sums(sizes), low - float(s[fine].sum()),
                                    high, most)
        if members is not None and (best is None or len(members) < len(best[1])):
            best = fine, {k: coarse[m] for k, m in members.items()}
    return best


def _coarse_dual(core: _Core, fill: _Fill, k: int, members: np.ndarray,
                 enough: float) -> _CountDual:
    """The bound of 3l for the sets of k of the coarse sellers `members`, with h(y), the
    relaxation `fill` of the fine sellers on top of pool y (convex), in place of L: every
    set of pool y loses at least h(z) + h'(z) (y - z), with h'(z) = L' at the pool the
    relaxation fills to. Each z gives a slope mu = h'(z) and the k sellers T of the least
    costs_j + mu s_j; the best bound lies where T's pool passes z, found on ever finer grids
    of _DUAL_GRID points (_DUAL_ROUNDS of them; it stops at `enough`)."""
    spent = _r_costs(core)
    sizes, costs = core.size[members], _member_costs(core)[members]
    if k > sizes.size:
        return _CountDual(k, members, 0.0, np.inf)
    low, high = (core.base + float(x[k]) for x in _extreme_sums(sizes))
    best, slope = -np.inf, 0.0
    for _ in range(_DUAL_ROUNDS):
        z = np.linspace(low, high, _DUAL_GRID)
        relaxed, filled = fill(z)
        mu = core.r - _slope(core.sqrt_k, filled)
        least = np.argpartition(costs + mu[:, None] * sizes, k - 1, axis=1)[:, :k] if k else (
            np.zeros((z.size, 0), dtype=np.int64))
        apart = core.base + sizes[least].sum(axis=1) - z  # decreasing in z
        bound = spent + relaxed + costs[least].sum(axis=1) + mu * apart
        at = int(np.argmax(bound))
        if bound[at] > best:
            best, slope = float(bound[at]), float(mu[at])
        below = int(np.count_nonzero(apart > 0))  # T's pool passes z after these
        low, high = z[max(below - 1, 0)], z[min(below, z.size - 1)]
        if best >= enough or not low < high:
            break
    return _CountDual(k, members, slope, best)


class _FineCounts:
    """A floor on the loss of the sets of `sellers` added to a pool whose own pools lie
    within `window`, by their number: k of them reach between the k smallest and the k
    largest sizes summed on top of it and cost at least their k least costs as members
    (:func:`_member_costs`), so such a set loses at least L at the point of that range
    nearest n0 (L is convex) plus those costs. The least over the k whose range meets the
    window (inf when none) sees the gaps between the pools of successive k (sellers in a
    narrow band), which the relaxation (:class:`_Fill`) fills; when over _FLOOR_COUNTS k
    meet it, their ranges overlap and it is -inf (no floor: in two bands near 10^3 and
    10^6, 96 of them did, and the floor cost 5 to 10 % of a round, settling nothing)."""

    def __init__(self, core: _Core, sellers: np.ndarray, window: tuple[float, float]):
        self.core, self.window = core, window
        self.smallest, self.largest = _extreme_sums(core.size[sellers])
        self.cheapest = np.concatenate([[0.0], np.cumsum(np.sort(_member_costs(core)[sellers]))])

    def __call__(self, pools: np.ndarray) -> np.ndarray:
        """The floor for each of `pools`."""
        first = np.searchsorted(self.largest, self.window[0] - pools)  # the k that reach it
        stop = np.searchsorted(self.smallest, self.window[1] - pools, side="right")
        width = int((stop - first).max(initial=0))
        if width > _FLOOR_COUNTS:  # their pools overlap: the relaxation does about as well
            return np.full(pools.size, -np.inf)
        out = np.full(pools.size, np.inf)
        rows = max(1, _FLOOR_CELLS // max(width, 1))
        for start in range(0, pools.size if width > 0 else 0, rows):
            at = slice(start, start + rows)
            k = first[at, None] + np.arange(width)
            inside = k < stop[at, None]
            k = np.minimum(k, self.cheapest.size - 1)
            y = pools[at, None]
            nearest = np.clip(self.core.n0, y + self.smallest[k], y + self.largest[k])
            floor = np.where(inside, self.core.loss(nearest) + self.cheapest[k], np.inf)
            out[at] = floor.min(axis=1)
        return out


class _Fill:
    """The continuous relaxation of 2 for `sellers` added to a pool: for each pool y, the
    least of L(y + x) plus the cost of x samples of them (their costs as members,
    :func:`_member_costs`), fractions of a seller allowed, which bounds any set of them
    added to y. The sellers go by ascending cost per sample (L convex); the k-th is taken
    whole while L' at the pool with it stays at or below minus its cost per sample, found
    by bisection for every pool at once, and the next one up to where L' meets minus its
    cost per sample."""

    def __init__(self, core: _Core, sellers: np.ndarray):
        costs = _member_costs(core)[sellers]
        order = np.argsort(costs / core.size[sellers], kind="stable")
        self.core, self.size, costs = core, core.size[sellers][order], costs[order]
        self.rho = costs / self.size
        self.reach, self.spend = (np.concatenate([[0.0], np.cumsum(x)]) for x in (self.size, costs))

    def __call__(self, pools: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the bound, the pool y + x where it is least) for each of `pools`."""
        core, size, rho, reach = self.core, self.size, self.rho, self.reach
        low, high = np.zeros(pools.size, dtype=np.int64), np.full(pools.size, size.size)
        while np.any(low < high):  # whole sellers: L'(pool + reach_k) <= -rho_k
            mid = (low + high + 1) // 2
            whole = _slope(core.sqrt_k, pools + reach[mid]) >= core.r + rho[mid - 1]
            low, high = np.where(whole, mid, low), np.where(whole, high, mid - 1)
        part = np.minimum(low, size.size - 1)  # the seller taken in part (none if all whole)
        share = np.clip(_pool_at_slope(core.sqrt_k, core.r + rho[part]) - pools - reach[low],
                        0.0, np.where(low < size.size, size[part], 0.0))
        filled = pools + reach[low] + share
        return core.loss(filled) + self.spend[low] + rho[part] * share, filled


def _pairing_work(first: int, second: int, k: int) -> int:
    """Sets listed to pair k // 2 of `first` sellers with k - k // 2 of `second`."""
    return math.comb(first, k // 2) + math.comb(second, k - k // 2)


class _Pairing(NamedTuple):
    """Sets of `count` sellers: count // 2 of `first` and the others of `second` (the same
    list, or one disjoint from it); with `within`, the sellers of `within` but those."""

    first: np.ndarray
    second: np.ndarray
    count: int
    within: np.ndarray | None = None


def _paired_members(core: _Core, pairings: list[_Pairing]) -> tuple[float, np.ndarray] | None:
    """(loss, flips) of the best set of the `pairings`, (inf, none) when they hold none,
    or None when too many of their parts share sellers. For each part from the first
    list, the best disjoint one of the second reaches the nearest total size to n0 below
    or above (L is convex), found in the sorted list of the second."""
    s, base = core.size, core.base
    best, chosen = np.inf, None
    for first, second, count, within in pairings:
        total = float(s[within].sum()) if within is not None else 0.0
        sign = -1.0 if within is not None else 1.0  # the pool is base + total + sign x
        pool = np.union1d(first, second)
        left, right = (np.searchsorted(pool, x)[_combinations(x.size, h)]
                       for x, h in ((first, count // 2), (second, count - count // 2)))
        if not right.shape[0]:
            continue
        left_sum, right_sum = s[pool[left]].sum(axis=1), s[pool[right]].sum(axis=1)
        order = np.argsort(right_sum, kind="stable")
        right, right_sum = right[order], right_sum[order]
        at = np.searchsorted(right_sum, sign * (core.n0 - base - total) - left_sum)
        if first is second:
            masks = _masks(left, pool.size), _masks(right, pool.size)
            partners = _nearest_disjoint(*masks, at - 1, -1), _nearest_disjoint(*masks, at, 1)
            if partners[0] is None or partners[1] is None:
                return None
        else:
            partners = at - 1, np.where(at < right_sum.size, at, -1)
        for partner in partners:
            has = np.flatnonzero(partner >= 0)
            if not has.size:
                continue
            losses = core.loss(base + total + sign * (left_sum[has] + right_sum[partner[has]]))
            i = int(np.argmin(losses))
            if losses[i] < best:
                best = float(losses[i])
                parts = pool[np.concatenate([left[has[i]], right[partner[has[i]]]])]
                chosen = parts if within is None else np.setdiff1d(within, parts)
    if chosen is None:
        return np.inf, np.zeros(0, dtype=np.int64)
    return _as_flips(core, chosen)


def _combinations(n: int, h: int) -> np.ndarray:
    """Every h-subset of range(n), one per row in ascending order."""
    picks = _combination_sums(n, h)[1]
    return _traced_subsets(picks, np.arange(picks[-1][0].size if picks else 1))


def _masks(rows: np.ndarray, n: int) -> np.ndarray:
    """Each row of members out of range(n) as bits, 64 to a word."""
    out = np.zeros((rows.shape[0], (n + 63) // 64), dtype=np.uint64)
    every = np.arange(rows.shape[0])
    for column in rows.T:
        out[every, column // 64] |= np.left_shift(np.uint64(1), (column % 64).astype(np.uint64))
    return out


def _nearest_disjoint(left: np.ndarray, right: np.ndarray, start: np.ndarray,
                      step: int) -> np.ndarray | None:
    """For each row of `left` (member bits), the first row of `right` from `start` on (in
    direction `step`) that shares no member with it, or -1 when there is none; None when
    the rows still looking would compare more than _CHECKS words at once."""
    found = np.full(left.shape[0], -1)
    todo, at, width = np.arange(left.shape[0]), start.copy(), 2
    while todo.size:
        if todo.size * width * left.shape[1] > _CHECKS:
            return None
        rows = at[todo, None] + step * np.arange(width)
        inside = (rows >= 0) & (rows < right.shape[0])
        shared = left[todo, None, :] & right[np.clip(rows, 0, right.shape[0] - 1)]
        free = inside & ~shared.any(axis=2)
        hit = free.any(axis=1)
        found[todo[hit]] = rows[hit, np.argmax(free[hit], axis=1)]
        at[todo] += step * width
        todo = todo[~hit & inside[:, -1]]
        width *= 2
    return found


def _cost_units(core: _Core, plan: _Plan, exact: bool,
                w: np.ndarray | None = None) -> tuple[np.ndarray, float, int]:
    """The flip costs the flip table adds up: (costs, unit, top). Costs are counted in whole
    units of tol / (4 most), rounded up, in the narrowest integer type whose range holds
    every sum within the budget below `top` (the value of cells no such sum reaches): a
    set's cost in units exceeds its cost by less than one unit per flip, so the table's
    best set is within tol / 4 of the best one within the budget, which flips at most
    `most` sellers. Budgets stay below L(n_r) + tol <= (1e11 + 1) tol, so int64 holds
    them; only a budget past 2^58 tol would be counted in coarser units. A table that only
    looks for a good set (not `exact`) counts in units of at least budget / 2^29. `w`: the
    costs to add up, if not core.w (then the budget grows by `most` times their largest
    excess over core.w)."""
    most = max(plan.most, 1)
    w = core.w[plan.items] if w is None else w[plan.items]
    budget = plan.budget + most * float(np.max(w - core.w[plan.items], initial=0.0))
    unit = core.tol / (4 * most) if exact else max(core.tol / (4 * most), budget / (1 << 29))
    reach = budget / unit + most  # units of any set within the budget
    if reach < (1 << 14) - 1:  # then top + any cost stays within the type
        dtype, top = np.int16, 1 << 14
    elif reach < (1 << 30) - 1:
        dtype, top = np.int32, 1 << 30
    else:
        dtype, top = np.int64, 1 << 62
        unit = max(unit, budget / (1 << 61))
    return np.ceil(w / unit).astype(dtype), unit, top


class _Scratch(threading.local):
    """Memory the flip tables of one thread reuse: fresh memory is slow to touch."""

    buffer = np.empty(0, dtype=np.uint8)


_SCRATCH = _Scratch()


def _reused(count: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised array of `count` items of `dtype` in this thread's scratch memory
    (valid until the next call)."""
    size = count * np.dtype(dtype).itemsize
    if _SCRATCH.buffer.size < size:
        _SCRATCH.buffer = np.empty(size, dtype=np.uint8)
    return _SCRATCH.buffer[:size].view(dtype)


class _Run(NamedTuple):
    """A flip table's pass over a run of flips, on a lattice `ratio` times the sizes' one,
    in an array whose index 0 is pool change `start` (in units of that lattice): flip j
    updates `lengths[j]` cells from index `firsts[j]` on, and its sums through it are kept
    from `offsets[j]` on (or where they win, one bit per cell, in `won[j]`)."""

    items: np.ndarray
    moves: list
    costs: list
    start: int
    stop: int
    ratio: int
    firsts: list
    lengths: list
    offsets: list
    won: list


def _run(plan: _Plan, costs: np.ndarray, flips: slice, ratio: int, kept_before: int) -> _Run:
    """The pass of the flip table of `plan` over its flips `flips` (a run of them), with the
    kept sums of earlier passes taking `kept_before` cells."""
    lows = -(-plan.lows[flips.start : flips.stop + 1] // ratio)  # rounded inwards
    highs = plan.highs[flips.start : flips.stop + 1] // ratio
    moves = plan.move[flips] // ratio
    start, stop = int(lows.min()), int(highs.max())
    firsts = np.maximum(lows[1:], lows[:-1] + moves) - start
    lengths = np.maximum(np.minimum(highs[1:], highs[:-1] + moves) - start + 1 - firsts, 0)
    offsets = np.cumsum(lengths) - lengths + kept_before
    return _Run(plan.items[flips], moves.tolist(), costs[flips].tolist(), start, stop, ratio,
                firsts.tolist(), lengths.tolist(), offsets.tolist(), [])


def _fill(cheapest: np.ndarray, run: _Run, kept: np.ndarray, packed: bool) -> None:
    """Takes the flips of `run` into `cheapest` (the least cost of every pool change),
    keeping each flip's sums through it in `kept` (or, `packed`, where they win; `kept`
    then holds scratch cells, at least _CACHED_BYTES and _BLOCK_BYTES)."""
    for first, n, at, u, cost in zip(run.firsts, run.lengths, run.offsets, run.moves,
                                     run.costs, strict=True):
        if packed:
            run.won.append(_packed_pass(cheapest, first, n, u, cost, kept))
            continue
        target = cheapest[first : first + n]
        via = np.add(cheapest[first - u : first + n - u], cost, out=kept[at : at + n])
        np.minimum(target, via, out=target)  # never above top, so sums cannot overflow


def _packed_pass(cheapest: np.ndarray, first: int, n: int, u: int, cost: int,
                 scratch: np.ndarray) -> np.ndarray:
    """One flip (pool move `u`) over the `n` cells of `cheapest` from `first`: where the
    sums through it win, one bit per cell. Cells taking more than _CACHED_BYTES go in
    blocks of _BLOCK_BYTES that stay in cache (twice as fast as whole passes over such
    tables), taken against the move, so that a block reads only cells the flip has not yet
    updated."""
    won = np.empty((n + 7) // 8, dtype=np.uint8)
    size = cheapest.itemsize
    block = _BLOCK_BYTES // size if n * size > _CACHED_BYTES else max(n, 1)
    blocks = range(0, n, block)
    for a in reversed(blocks) if u > 0 else blocks:
        b = min(a + block, n)
        target = cheapest[first + a : first + b]
        via = np.add(cheapest[first + a - u : first + b - u], cost, out=scratch[: b - a])
        won[a // 8 : (b + 7) // 8] = np.packbits(via < target)
        np.minimum(target, via, out=target)  # never above top, so sums cannot overflow
    return won


def _trace(run: _Run, kept: np.ndarray, packed: bool, at: int, value: int,
           flips: list) -> tuple[int, int]:
    """Follows the cheapest cost `value` at index `at` back through the flips of `run`,
    appending those it took to `flips`: (index, value) before the run."""
    firsts, lengths, offsets, moves, costs = (run.firsts, run.lengths, run.offsets, run.moves,
                                              run.costs)
    for j in range(len(moves) - 1, -1, -1):
        x = at - firsts[j]
        if not 0 <= x < lengths[j]:
            continue
        if packed:
            taken = run.won[j].item(x >> 3) >> (7 - (x & 7)) & 1
        else:  # the cheapest cost at x came through this flip
            taken = kept.item(offsets[j] + x) == value
        if taken:
            flips.append(run.items[j])
            at -= moves[j]
            value -= costs[j]
    return at, value


def _least_total(core: _Core, cheapest: np.ndarray, unit: float, top: int, start: int,
                 ends: tuple[int, int]) -> int | None:
    """The index within `ends` of the least total loss, cost (`cheapest` in units of
    `unit`; `top`: not reached) plus L, or None when no pool there is reached. The
    _WINDOW cells next to n0 first give a total; only pools where L alone is below it can
    do better (L is convex), and only those are scanned, so the index is the one a scan of
    every cell would find."""

    def least(first: int, last: int) -> tuple[float, int | None]:
        change = np.arange(first, last + 1)
        change = change[cheapest[change] < top]
        with np.errstate(invalid="ignore", divide="ignore"):  # pools <= 0: never reached
            total = cheapest[change] * unit + core.loss(core.n_r + (change + start) * core.step)
        total = np.where(np.isfinite(total), total, np.inf)
        if not change.size or not np.isfinite(total).any():
            return np.inf, None
        k = int(np.argmin(total))
        return float(total[k]), int(change[k])

    first, last = ends
    positive = int(np.floor(-core.n_r / core.step)) + 1  # the first pool change to a pool > 0
    positive += core.n_r + positive * core.step <= 0.0  # (after rounding)
    first = max(first, positive - start)
    if last - first < 8 * _WINDOW:
        return least(first, last)[1]
    near = min(max(core.below_n0() - start, first), last)
    bound, at = least(max(near - _WINDOW, first), min(near + _WINDOW, last))
    if at is not None:
        pools = core.n_r + (np.array([first, last]) + start) * core.step
        low, high = _pools_within(core, bound, *pools)
        first = max(int(np.floor((low - core.n_r) / core.step)) - start - 1, first)
        last = min(int(np.ceil((high - core.n_r) / core.step)) - start + 1, last)
    return least(first, last)[1]


def _cost_table(core: _Core, plan: _Plan, exact: bool = True) -> tuple[float, np.ndarray]:
    """The cheapest flips of the plan for every pool change, and of them the set with the
    least loss: (loss, flipped sellers)."""
    table = _filled(core, plan, exact)
    at = _least_total(core, table.cheapest, table.unit, table.top, table.start, table.ends)
    if at is None:
        return np.inf, np.zeros(0, dtype=np.int64)
    flips = _table_trace(table, at)
    return float(core.w[flips].sum() + core.loss(core.n_r + (at + table.start) * core.step)), flips


class _Table(NamedTuple):
    """A filled flip table: the least cost `cheapest` (in units of `unit`; `top`: not
    reached) of every pool change, index x holding pool change x + `start` (in lattice
    units), and final pool changes looked for at indices within `ends`; the passes `runs`
    and the sums they kept, to trace a set back."""

    cheapest: np.ndarray
    unit: float
    top: int
    start: int
    ends: tuple[int, int]
    runs: list
    kept: np.ndarray
    packed: bool


def _filled(core: _Core, plan: _Plan, exact: bool, w: np.ndarray | None = None) -> _Table:
    """The flip table of the plan. The coarse flips go first on their lattice, whose cells
    are then spread onto the sizes' one. Each flip's costs through it are kept and traced
    back exactly (integer sums); a table above _LOOSE_CELLS keeps only where they win, one
    bit per cell. `w`: the costs to add up, if not core.w."""
    costs, unit, top = _cost_units(core, plan, exact, w)
    c = plan.coarse
    runs = [_run(plan, costs, slice(0, c), plan.ratio, 0)] if c else []
    runs.append(_run(plan, costs, slice(c, plan.items.size), 1, sum(runs[0].lengths) if c else 0))
    packed = plan.cells > _LOOSE_CELLS
    if packed:
        kept = _reused(max(_CACHED_BYTES, _BLOCK_BYTES) // costs.itemsize + 1, costs.dtype)
    else:
        kept = _reused(sum(sum(run.lengths) for run in runs), costs.dtype)
    cheapest = np.full(runs[0].stop - runs[0].start + 1, top, dtype=costs.dtype)
    cheapest[-runs[0].start] = 0  # index x - start holds pool change x; top: not reached
    for i, run in enumerate(runs):
        if i:  # from the coarse lattice onto the sizes' one, where this run reads it
            coarse, cheapest = cheapest, np.full(run.stop - run.start + 1, top, dtype=costs.dtype)
            ratio, begin = runs[0].ratio, runs[0].start
            lo, hi = max(-(-run.start // ratio), begin), min(run.stop // ratio, runs[0].stop)
            cheapest[lo * ratio - run.start : hi * ratio - run.start + 1 : ratio] = (
                coarse[lo - begin : hi - begin + 1])
        _fill(cheapest, run, kept, packed)
    start = runs[-1].start
    ends = max(plan.low, int(plan.lows[-1])) - start, min(plan.high, int(plan.highs[-1])) - start
    return _Table(cheapest, unit, top, start, ends, runs, kept, packed)


def _table_trace(table: _Table, at: int) -> np.ndarray:
    """The flips of the cheapest set at index `at` of the table."""
    runs, value, flips = table.runs, int(table.cheapest[at]), []
    for i in range(len(runs) - 1, -1, -1):
        if i < len(runs) - 1:  # back onto the coarse lattice
            at = (at + runs[i + 1].start) // runs[i].ratio - runs[i].start
        at, value = _trace(runs[i], table.kept, table.packed, at, value, flips)
    return np.array(flips, dtype=np.int64)


def _table_traces(table: _Table, at: np.ndarray, count: int) -> np.ndarray:
    """The flips of the cheapest sets at the indices `at` of the table, all traced at once
    (as :func:`_table_trace` does one): a bool mask (at.size, count) over the core
    sellers."""
    runs, flips = table.runs, np.zeros((at.size, count), dtype=bool)
    value, rows = table.cheapest[at].astype(np.int64), np.arange(at.size)
    for i in range(len(runs) - 1, -1, -1):
        run = runs[i]
        if i < len(runs) - 1:  # back onto the coarse lattice
            at = (at + runs[i + 1].start) // run.ratio - run.start
        for j in range(len(run.moves) - 1, -1, -1):
            if not run.lengths[j]:
                continue
            x = at - run.firsts[j]
            inside = (x >= 0) & (x < run.lengths[j])
            x = np.where(inside, x, 0)
            if table.packed:  # where the sums through the flip won
                taken = inside & (run.won[j][x >> 3] >> (7 - (x & 7)) & 1).astype(bool)
            else:  # the cheapest cost came through this flip
                taken = inside & (table.kept[run.offsets[j] + x] == value)
            flips[rows[taken], run.items[j]] = True
            at = at - run.moves[j] * taken
            value = value - run.costs[j] * taken
    return flips


class _Search:
    """Step 3 of the module docstring. States are expanded breadth-first, several sellers
    at a time while there are few states; above _STATES states they are split in two and
    searched depth-first, the half with the lower bounds first, so memory stays bounded and
    the margin tightens early."""

    def __init__(self, core: _Core):
        seq = np.lexsort((core.size, core.w))  # the sellers by flip cost, then size
        self.core, self.seq = core, seq
        self.budget, self.work = np.inf, 0  # states expanded, and the most allowed
        self.best, self.best_flips = float(core.loss(core.n_r)), np.zeros(0, dtype=np.int64)
        self.tied = seq[core.w[seq] == 0]  # free flips: prices per sample tie
        self.hard, self.attempts = _HARD, 0
        # per expansion: (parent state, code of the sellers flipped (bit b: items[b]), items)
        self.history: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def attempt(self, budget: float) -> bool:
        """Search from the start with at most `budget` work; True when it finished (then
        best_flips is optimal)."""
        self.budget, self.work = budget, 0
        del self.history[:]
        try:
            self.run(np.array([self.core.n_r]), np.zeros(1), np.zeros(1), 0)
        except _OverBudget:
            return False
        return True

    @functools.cached_property
    def tails(self) -> tuple[list, list]:
        """The `tail` arguments of :meth:`_Core.onward` for every k, growing and shrinking."""
        return _tails(self.core, self.seq, True), _tails(self.core, self.seq, False)

    def bound(self, n, W, own, k: int):
        """Lower bound on the final loss of states (pool n, flip cost W, own loss `own`)
        with the sellers seq[k:] left: no more flips, flips in one direction, or both."""
        core, up, down = self.core, self.tails[0][k], self.tails[1][k]
        out = np.minimum(own, np.minimum(core.onward(n, up, True), core.onward(n, down, False)))
        if up[3] and down[3]:
            fixed = max(up[0] * up[2] + down[0] * down[2], up[1] + down[1])
            out = np.minimum(out, fixed + core.closest(n, up[2] - down[3], up[3] - down[2]))
        return W + out

    def trace(self, j: int) -> np.ndarray:
        """The sellers flipped by state j of the newest expansion."""
        picked = []
        for parent, code, items in reversed(self.history):
            c = int(code[j])
            picked += [items[b] for b in range(items.size) if c >> b & 1]
            j = int(parent[j])
        return np.array(picked, dtype=np.int64)

    def offer(self, loss: float, flips: np.ndarray) -> bool:
        """Keep the set `flips` of total loss `loss` when it beats the best; True if so."""
        if loss < self.best:
            self.best, self.best_flips = loss, flips
            return True
        return False

    def first_state(self) -> None:
        """A good state to start from: the meet-in-the-middle search over the 2 * _HALF
        cheapest flips, or the greedy fills of the gap to n0 when they do better."""
        core, seq = self.core, self.seq
        if seq.size >= 2 * _HALF:
            self.offer(*_meet_in_middle(
                core, seq[:_HALF], seq[_HALF : 2 * _HALF], seq[2 * _HALF :], pairs=False
            ))
        for overshoot in (False, True):
            flips = _greedy_fill(core, overshoot)
            self.offer(core.flip_loss(flips), flips)

    def improve(self) -> None:
        """Look for a better state among the free flips `tied` when the search grows: the
        best state so far polished, and subsets of _TIED_LEFT free flips against pairs of
        _PAIRED others, polished, _ATTEMPTS times with other sellers each call (a state
        within the margin of the bound ends the search at once)."""
        core, seq = self.core, self.seq
        gap, moves = core.n0 - core.n_r, core.move[self.tied]
        grow, shrink = moves[moves > 0].sum(), -moves[moves < 0].sum()
        tied = self.tied[(moves <= gap + shrink) & (moves >= gap - grow)]  # others overshoot
        if tied.size <= 2 * _TIED_LEFT:
            self.tied = seq[:0]
            return
        found, flips = _polish(core, self.best_flips, tied[:_PAIRED])
        for _ in range(_ATTEMPTS):
            if found < self.best:
                self.best, self.best_flips = found, flips
            if self.best <= core.tol:
                break
            self.attempts += 1
            left = _spread(core, tied, _TIED_LEFT, self.attempts * _GOLDEN % 1.0)
            others = np.setdiff1d(tied, left)
            right = np.roll(others, -self.attempts * _PAIRED)[:_PAIRED]
            rest = np.setdiff1d(seq, np.concatenate([left, right]))
            found, flips = _meet_in_middle(core, left, right, rest, pairs=True)
            found, flips = _polish(core, flips, right)
        if found < self.best:
            self.best, self.best_flips = found, flips

    def narrow(self, keep: np.ndarray, *states: np.ndarray) -> tuple[np.ndarray, ...]:
        """The states selected by `keep` (mask or indices), recorded in the newest history
        entry so that :meth:`trace` still finds their flips."""
        if self.history:
            parent, code, items = self.history[-1]
            self.history[-1] = (parent[keep], code[keep], items)
        return tuple(x[keep] for x in states)

    def run(self, n, W, moved, k: int) -> None:
        """Search every completion of the states (pool n, flip cost W, pool change `moved`)
        by the sellers seq[k:], keeping the best state found."""
        core, seq, depth = self.core, self.seq, len(self.history)
        keep = self.bound(n, W, core.loss(n), k) < self.best - core.tol
        n, W, moved = self.narrow(keep, n, W, moved)
        while n.size and k < seq.size:
            if n.size > self.hard and self.tied.size:
                self.improve()
                self.hard *= _HARD_GROWTH
                keep = self.bound(n, W, core.loss(n), k) < self.best - core.tol
                n, W, moved = self.narrow(keep, n, W, moved)
                continue
            if n.size > _STATES:
                lower = self.bound(n, W, core.loss(n), k)
                for half in np.array_split(np.argsort(lower, kind="stable"), 2):
                    half = half[lower[half] < self.best - core.tol]
                    self.history.append((half, np.zeros(half.size, dtype=np.int64), seq[:0]))
                    self.run(n[half], W[half], moved[half], k)
                    self.history.pop()
                break
            width = max(1, min(_BATCH_BITS, int(np.log2(_BATCH / n.size)), seq.size - k))
            items = seq[k : k + width]
            items = items[core.w[items] + W.min() < self.best - core.tol]
            k += width
            if items.size == 0:
                continue
            step, cost = _subset_sums(core.move[items], core.w[items])
            self.history.append(
                (np.repeat(np.arange(n.size), step.size), np.tile(np.arange(step.size), n.size),
                 items)
            )
            self.work += n.size * step.size
            if self.work > self.budget:
                raise _OverBudget
            n = (n[:, None] + step).ravel()
            W = (W[:, None] + cost).ravel()
            moved = (moved[:, None] + step).ravel()
            own = core.loss(n)
            j = int(np.argmin(W + own))
            if W[j] + own[j] < self.best:
                self.best, self.best_flips = float(W[j] + own[j]), self.trace(j)
            keep = np.flatnonzero(self.bound(n, W, own, k) < self.best - core.tol)
            if core.step and keep.size > 1:  # equal pools: only the cheapest can matter
                by_pool = keep[np.lexsort((W[keep], moved[keep]))]
                first = np.concatenate([[True], moved[by_pool][1:] != moved[by_pool][:-1]])
                keep = by_pool[first]
            n, W, moved = self.narrow(keep, n, W, moved)
        del self.history[depth:]
