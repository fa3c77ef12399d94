;;; mergesort: sort pseudo-random lists with a (non-tail-recursive) merge
;;; sort, many times over. Every pass builds a new list and drops the old
;;; one, so nearly everything allocated becomes garbage at once.

(define seed 20240601)

(define (next-random!)
  ;; A 31-bit linear congruential generator.
  (set! seed (modulo (+ (* seed 1103515245) 12345) 2147483648))
  seed)

(define (random-list n)
  (let loop ((i 0) (acc '()))
    (if (= i n)
        acc
        (loop (+ i 1) (cons (modulo (next-random!) 1000000) acc)))))

(define (split l a b)
  (if (null? l)
      (cons a b)
      (split (cdr l) b (cons (car l) a))))

(define (merge a b)
  (cond ((null? a) b)
        ((null? b) a)
        ((<= (car a) (car b)) (cons (car a) (merge (cdr a) b)))
        (else (cons (car b) (merge a (cdr b))))))

(define (merge-sort l)
  (if (or (null? l) (null? (cdr l)))
      l
      (let ((halves (split l '() '())))
        (merge (merge-sort (car halves))
               (merge-sort (cdr halves))))))

(define (sorted? l)
  (or (null? l)
      (null? (cdr l))
      (and (<= (car l) (cadr l))
           (sorted? (cdr l)))))

(define (checksum l)
  (let loop ((l l) (acc 0))
    (if (null? l)
        acc
        (loop (cdr l) (modulo (+ (* acc 31) (car l)) 1000000007)))))

(define (take l k)
  (if (or (= k 0) (null? l))
      '()
      (cons (car l) (take (cdr l) (- k 1)))))

(define rounds 12)
(define size 4000)

(define (run)
  (let loop ((i 0) (sum 0) (all-sorted #t) (last '()))
    (if (= i rounds)
        (list sum all-sorted last)
        (let* ((l (random-list size))
               (s (merge-sort l)))
          (loop (+ i 1)
                (modulo (+ sum (checksum s)) 1000000007)
                (and all-sorted (sorted? s) (= (length s) size))
                s)))))

(define result (run))
(display "sorted ") (display rounds) (display " lists of ") (display size)
(display ": ") (display (cadr result)) (newline)
(display "checksum: ") (display (car result)) (newline)
(display "smallest of the last: ") (display (take (caddr result) 5)) (newline)
