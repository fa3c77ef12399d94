;;; nqueens: count the placements of n queens on an n x n board
;;; (after the Gabriel/r7rs-benchmarks version).

(define (iota1 n)
  (let loop ((i n) (l '()))
    (if (= i 0)
        l
        (loop (- i 1) (cons i l)))))

(define (ok? row dist placed)
  (if (null? placed)
      #t
      (and (not (= (car placed) (+ row dist)))
           (not (= (car placed) (- row dist)))
           (ok? row (+ dist 1) (cdr placed)))))

(define (try-it x y z)
  (if (null? x)
      (if (null? y) 1 0)
      (+ (if (ok? (car x) 1 z)
             (try-it (append (cdr x) y) '() (cons (car x) z))
             0)
         (try-it (cdr x) (cons (car x) y) z))))

(define (queens n)
  (try-it (iota1 n) '() '()))

(define (count-all n times)
  (do ((i 0 (+ i 1))
       (result 0 (queens n)))
      ((= i times) result)))

(display "8 queens: ")
(display (count-all 8 40))
(display " solutions")
(newline)
(display "1..6 queens: ")
(display (map queens '(1 2 3 4 5 6)))
(newline)
